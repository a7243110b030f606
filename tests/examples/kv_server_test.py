#!/usr/bin/env python3
"""Drives examples/kv_server like a user would: start it on a free port with two shards (so
keys live on both and cross-shard paths run even on one core), check every command through
the real redis-cli with the exact replies Redis gives, expiry (lazy and swept), keys spread
across shards, pipelined raw RESP (whole and byte by byte), inline commands, a 1 MiB value,
malformed input (exact protocol error, connection closed, other clients unaffected),
random input (sockets.fuzz: well-formed replies, no crash or hang; set CORIO_FUZZ_SEED to
replay a seed), redis-benchmark, then SIGTERM: graceful exit 0. Then again, in short,
with shards that poll before they sleep (--idle-poll); with too few file descriptors for its clients
(accept fails with EMFILE and is retried; it must keep serving); and bad command lines
with their exact errors.

Usage: kv_server_test.py KV_SERVER_EXECUTABLE
"""
import re
import shutil
import signal
import subprocess
import sys
import time

from sockets import Failure, connect, expect, fuzz, fuzz_seed, recv_all, recv_exact, survives_fd_exhaustion


def check(got, want, what):
    """expect() with the argument order these tests read best in: value first."""
    expect(what, got, want)


class Server:
    def __init__(self, exe, *options):
        self.proc = subprocess.Popen([exe, "127.0.0.1:0", "2", *options], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().rstrip("\n")
        m = re.fullmatch(r"kv server on 127\.0\.0\.1:(\d+) \(2 shards\); Ctrl-C stops it", first)
        if not m:
            self.proc.kill()
            raise Failure(f"unexpected first line {first!r}; stderr {self.proc.stderr.read()!r}")
        self.port = int(m.group(1))

    def cli(self, *args):
        """One command through redis-cli; its typed (--no-raw) output, without the last newline."""
        r = subprocess.run(["redis-cli", "--no-raw", "-p", str(self.port), *args],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise Failure(f"redis-cli {args} exited {r.returncode}: {r.stderr!r}")
        return r.stdout.rstrip("\n")

    def connect(self):
        return connect(self.port)


def resp(*args):
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out += b"$" + str(len(b)).encode() + b"\r\n" + b + b"\r\n"
    return out


def test_basic_commands(s):
    c = s.cli
    check(c("FLUSHALL"), "OK", "FLUSHALL")
    check(c("PING"), "PONG", "PING")
    check(c("PING", "hello there"), '"hello there"', "PING with a message")
    check(c("ECHO", "hi"), '"hi"', "ECHO")
    check(c("SET", "k", "v"), "OK", "SET")
    check(c("GET", "k"), '"v"', "GET")
    check(c("GET", "missing"), "(nil)", "GET of a missing key")
    check(c("SET", "k", "w", "NX"), "(nil)", "SET NX of an existing key")
    check(c("SET", "n", "w", "XX"), "(nil)", "SET XX of a missing key")
    check(c("SET", "k", "w", "XX"), "OK", "SET XX of an existing key")
    check(c("GET", "k"), '"w"', "GET after SET XX")
    check(c("SET", "k", "v", "foo"), "(error) ERR syntax error", "SET with a bad option")
    check(c("SET", "k", "v", "EX", "abc"), "(error) ERR value is not an integer or out of range", "SET EX abc")
    check(c("SET", "k", "v", "EX", "0"), "(error) ERR invalid expire time in 'set' command", "SET EX 0")
    check(c("DEL", "k", "nope", "k2"), "(integer) 1", "DEL of one existing key out of three")
    check(c("MSET", "a", "1", "b", "2", "c", "3"), "OK", "MSET")
    check(c("EXISTS", "a", "b", "nope", "a"), "(integer) 3", "EXISTS counts duplicates")
    check(c("MGET", "a", "nope", "c"), '1) "1"\n2) (nil)\n3) "3"', "MGET")
    check(c("DEL", "a", "b", "c"), "(integer) 3", "DEL of three keys")
    check(c("INCR", "counter"), "(integer) 1", "INCR of a missing key")
    check(c("INCR", "counter"), "(integer) 2", "INCR")
    check(c("SET", "text", "abc"), "OK", "SET text")
    check(c("INCR", "text"), "(error) ERR value is not an integer or out of range", "INCR of text")
    check(c("SET", "big", "9223372036854775807"), "OK", "SET max int64")
    check(c("INCR", "big"), "(error) ERR increment or decrement would overflow", "INCR overflow")
    check(c("TTL", "nope"), "(integer) -2", "TTL of a missing key")
    check(c("TTL", "counter"), "(integer) -1", "TTL of a key without expiry")
    check(c("EXPIRE", "counter", "100"), "(integer) 1", "EXPIRE")
    check(c("TTL", "counter"), "(integer) 100", "TTL after EXPIRE 100")
    check(c("EXPIRE", "nope", "100"), "(integer) 0", "EXPIRE of a missing key")
    check(c("EXPIRE", "counter", "x"), "(error) ERR value is not an integer or out of range", "EXPIRE x")
    check(c("SET", "counter", "5"), "OK", "SET over a key with expiry")
    check(c("TTL", "counter"), "(integer) -1", "SET clears the expiry")
    check(c("DBSIZE"), "(integer) 3", "DBSIZE")
    check(c("FLUSHALL"), "OK", "FLUSHALL")
    check(c("DBSIZE"), "(integer) 0", "DBSIZE after FLUSHALL")
    check(c("foo", "bar", "baz"), "(error) ERR unknown command 'foo', with args beginning with: 'bar' 'baz' ",
          "unknown command")
    check(c("GET"), "(error) ERR wrong number of arguments for 'get' command", "GET without a key")
    check(c("DBSIZE", "x"), "(error) ERR wrong number of arguments for 'dbsize' command", "DBSIZE x")
    check(c("COMMAND", "DOCS"), "(empty array)", "COMMAND DOCS")
    check(c("CONFIG", "GET", "save"), '1) "save"\n2) ""', "CONFIG GET save")
    check(c("CONFIG", "GET", "appendonly"), '1) "appendonly"\n2) "no"', "CONFIG GET appendonly")


def test_expiry(s):
    c = s.cli
    check(c("SET", "short", "v", "PX", "200"), "OK", "SET PX 200")
    check(c("GET", "short"), '"v"', "GET before the deadline")
    check(c("SET", "long", "v", "EX", "50"), "OK", "SET EX 50")
    check(c("TTL", "long"), "(integer) 50", "TTL after SET EX 50")
    pttl = int(c("PTTL", "short").split()[1])
    if not (0 < pttl <= 200 or pttl == -2):  # -2: a slow machine took over 200 ms to get here
        raise Failure(f"PTTL of a key set with PX 200 is {pttl}")
    time.sleep(0.6)
    check(c("GET", "short"), "(nil)", "GET after the deadline (lazy expiry)")
    check(c("TTL", "short"), "(integer) -2", "TTL after the deadline")
    # The periodic sweep: keys nobody touches again leave DBSIZE too.
    check(c("FLUSHALL"), "OK", "FLUSHALL")
    conn = s.connect()
    conn.sendall(b"".join(resp("SET", f"gone{i}", "x", "PX", "100") for i in range(200)))
    check(recv_exact(conn, 5 * 200), b"+OK\r\n" * 200, "200 SET PX replies")
    conn.close()
    check(c("SET", "stays", "y"), "OK", "SET stays")
    deadline = time.monotonic() + 10
    while c("DBSIZE") != "(integer) 1" and time.monotonic() < deadline:
        time.sleep(0.1)
    check(c("DBSIZE"), "(integer) 1", "DBSIZE once the sweep removed 200 expired keys")
    check(c("EXPIRE", "stays", "0"), "(integer) 1", "EXPIRE 0")
    check(c("EXISTS", "stays"), "(integer) 0", "EXPIRE 0 deletes the key")


def test_keys_across_shards(s):
    c = s.cli
    check(c("FLUSHALL"), "OK", "FLUSHALL")
    args = []
    for i in range(100):
        args += [f"key:{i}", f"value {i}"]
    check(c("MSET", *args), "OK", "MSET of 100 keys")
    check(c("DBSIZE"), "(integer) 100", "DBSIZE after MSET of 100 keys (summed over the shards)")
    want = "\n".join(f'{i + 1:>3}) "value {i}"' for i in range(100))  # redis-cli pads the index
    check(c("MGET", *[f"key:{i}" for i in range(100)]), want, "MGET of the 100 keys")
    check(c("EXISTS", *[f"key:{i}" for i in range(0, 100, 3)], "absent"), "(integer) 34", "EXISTS over shards")
    check(c("DEL", *[f"key:{i}" for i in range(50)]), "(integer) 50", "DEL of 50 keys over shards")
    check(c("DBSIZE"), "(integer) 50", "DBSIZE after DEL")
    for i in (0, 49, 50, 99):
        check(c("GET", f"key:{i}"), "(nil)" if i < 50 else f'"value {i}"', f"GET key:{i}")


def test_pipelining_and_inline(s):
    conn = s.connect()
    batch = b"".join(resp("SET", f"p{i}", f"v{i}") + resp("GET", f"p{i}") for i in range(500))
    conn.sendall(batch)
    want = b"".join(b"+OK\r\n" + f"${len(f'v{i}')}\r\nv{i}\r\n".encode() for i in range(500))
    check(recv_exact(conn, len(want)), want, "1000 pipelined commands")
    # The same stream byte by byte: every split point of a command must parse.
    small = resp("INCR", "split") + b"PING\r\n" + resp("ECHO", "a b") + b"ECHO  'c d'  \r\n"
    for b in small:
        conn.sendall(bytes([b]))
        time.sleep(0.001)
    want = b":1\r\n+PONG\r\n$3\r\na b\r\n$3\r\nc d\r\n"
    check(recv_exact(conn, len(want)), want, "commands sent byte by byte")
    conn.sendall(b"\r\n\r\n*0\r\n*-1\r\nPING\r\n")
    check(recv_exact(conn, 7), b"+PONG\r\n", "empty commands are skipped")
    conn.sendall(b"PING\r\nQUIT\r\nPING\r\n")
    check(recv_all(conn), b"+PONG\r\n+OK\r\n", "QUIT answers OK, closes, drops the rest")
    conn.close()
    # QUIT after commands for both shards: they run, the commands after QUIT do not.
    conn = s.connect()
    conn.sendall(b"".join(resp("SET", f"q{i}", "x") for i in range(20)) + resp("QUIT") +
                 b"".join(resp("SET", f"after{i}", "x") for i in range(20)))
    check(recv_all(conn), b"+OK\r\n" * 21, "20 SETs over both shards, QUIT")
    conn.close()
    check(s.cli("EXISTS", *[f"q{i}" for i in range(20)]), "(integer) 20", "the SETs before QUIT ran")
    check(s.cli("EXISTS", *[f"after{i}" for i in range(20)]), "(integer) 0", "the SETs after QUIT did not")


def test_big_value(s):
    value = bytes((i * 7) % 251 for i in range(1 << 20))
    conn = s.connect()
    conn.sendall(resp("SET", "big", value) + resp("GET", "big") + resp("DEL", "big"))
    want = b"+OK\r\n" + f"${len(value)}\r\n".encode() + value + b"\r\n" + b":1\r\n"
    check(recv_exact(conn, len(want)) == want, True, "SET, GET and DEL of a 1 MiB value")
    # 300 pipelined GETs of it: 300 MiB of replies, sent as they are made, not held at once.
    conn.sendall(resp("SET", "big", value) + resp("GET", "big") * 300 + resp("PING"))
    check(recv_exact(conn, 5), b"+OK\r\n", "SET of the 1 MiB value")
    one = f"${len(value)}\r\n".encode() + value + b"\r\n"
    for i in range(300):
        if recv_exact(conn, len(one)) != one:
            raise Failure(f"GET {i} of 300 pipelined GETs of a 1 MiB value")
    check(recv_exact(conn, 7), b"+PONG\r\n", "PING after 300 big GETs")
    conn.close()


def test_malformed_input(s):
    check(s.cli("SET", "safe", "kept"), "OK", "SET safe")
    cases = [
        (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$3x\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$536870913\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),  # > 512 MiB
        (b"*2\r\n$3\r\nGET\r\n:5\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
        (b"*1048577\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),  # > 1M elements
        (b"*01\r\n$4\r\nPING\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"SET a \"b\r\n", b"-ERR Protocol error: unbalanced quotes in request\r\n"),
        (b"x" * 70000, b"-ERR Protocol error: too big inline request\r\n"),
        (b"*1\r\n$" + b"1" * 70000, b"-ERR Protocol error: too big bulk count string\r\n"),
        (b"*1\r\n$4\r\nPINGxx", b"-ERR Protocol error: expected CRLF after bulk data\r\n"),
        # Commands before the bad one are answered first, those after it never run.
        (b"PING\r\n*1\r\n$x\r\n" + resp("SET", "safe", "overwritten"),
         b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"),
    ]
    for data, want in cases:
        conn = s.connect()
        conn.sendall(data)
        check(recv_all(conn), want, f"reply to {data[:30]!r}, then the connection closes")
        conn.close()
    check(s.cli("GET", "safe"), '"kept"', "data after malformed clients")
    check(s.cli("PING"), "PONG", "the server still serves others")


def resp_values(data: bytes) -> int:
    """How many RESP2 values data holds; Failure unless it is a sequence of whole ones."""
    def value(pos: int) -> int:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise Failure(f"reply cut off at byte {pos}: {data[pos:pos + 40]!r}")
        kind, line = data[pos:pos + 1], data[pos + 1:end]
        try:
            if kind in (b"+", b"-"):
                return end + 2
            if kind == b":":
                int(line)
                return end + 2
            if kind == b"$":
                n = int(line)
                if n < 0:
                    return end + 2
                if data[end + 2 + n:end + 4 + n] != b"\r\n":
                    raise Failure(f"bulk reply of {n} bytes without its CRLF at byte {pos}")
                return end + 4 + n
            if kind == b"*":
                p = end + 2
                for _ in range(int(line)):
                    p = value(p)
                return p
        except ValueError:
            pass
        raise Failure(f"not a RESP2 value at byte {pos}: {data[pos:pos + 40]!r}")
    pos = count = 0
    while pos < len(data):
        pos = value(pos)
        count += 1
    return count


def test_random_input(s):
    """Mutated commands and random bytes: every reply is well-formed RESP, nothing
    crashes or hangs, and a key no input names keeps its value."""
    check(s.cli("SET", "safe", "kept"), "OK", "SET safe")
    corpus = [resp("SET", "k1", "v1"), resp("GET", "k1"), resp("INCR", "n"), resp("MSET", "a", "1", "b", "2"),
              resp("MGET", "a", "b", "k1"), resp("EXPIRE", "a", "100"), resp("TTL", "a"), resp("DEL", "a", "b"),
              resp("EXISTS", "a", "k1"), resp("SET", "x", "y", "EX", "10"), resp("SET", "x", "y", "PX", "5000"),
              resp("DBSIZE"), resp("ECHO", "hello"), resp("QUIT"), b"PING\r\n", b"SET z \"a b\"\r\n",
              b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n"]
    seed = fuzz_seed()
    fuzz(s.port, corpus, 300, seed, resp_values)
    print(f"kv_server_test: 300 connections of random input (seed {seed}) answered")
    check(s.cli("GET", "safe"), '"kept"', f"the untouched key after fuzzing (seed {seed})")
    check(s.cli("PING"), "PONG", f"PING after fuzzing (seed {seed})")


def test_redis_benchmark(s):
    r = subprocess.run(["redis-benchmark", "-p", str(s.port), "-t", "ping,set,get", "-n", "5000", "-P", "16",
                        "-c", "8", "-q"], capture_output=True, text=True, timeout=120)
    out = r.stdout.replace("\r", "\n")
    if r.returncode != 0 or "WARNING" in r.stderr:
        raise Failure(f"redis-benchmark exited {r.returncode}: {r.stderr!r}")
    for test in ("PING_INLINE", "PING_MBULK", "SET", "GET"):
        if not re.search(rf"^{test}: [\d.]+ requests per second", out, re.M):
            raise Failure(f"redis-benchmark printed no {test} figure: {out!r}")


def test_shutdown(s):
    idle = s.connect()
    check(s.cli("PING"), "PONG", "PING before shutdown")
    s.proc.send_signal(signal.SIGTERM)
    out, err = s.proc.communicate(timeout=30)
    check(idle.recv(16), b"", "the idle connection is closed by the shutdown")
    idle.close()
    check((s.proc.returncode, out.splitlines(), err), (0, ["SIGTERM: shutting down", "stopped"], ""),
          "exit code, output and stderr after SIGTERM")


def run_suite(exe, options, tests) -> bool:
    s = Server(exe, *options)
    try:
        for test in tests:
            test(s)
    except (Failure, OSError, subprocess.SubprocessError) as e:
        print(f"kv_server_test: FAIL ({' '.join(options) or 'default options'}): {e}")
        if s.proc.poll() is None:
            s.proc.kill()
        out, err = s.proc.communicate()
        print("--- stdout ---\n" + out + "--- stderr ---\n" + err)
        return False
    print(f"kv_server_test: OK (port {s.port}, 2 shards{', ' + ' '.join(options) if options else ''})")
    return True


def main() -> int:
    exe = sys.argv[1]
    for tool in ("redis-cli", "redis-benchmark"):
        if shutil.which(tool) is None:
            print(f"kv_server_test: SKIP: {tool} is not installed")
            return 77
    for bad, want in ((["127.0.0.1:0", "x"], 'kv_server: bad shard count "x" (expected 0..4096; 0: one per CPU)\n'),
                      (["70000"], 'kv_server: bad address "127.0.0.1:70000": port 70000 is out of range 0..65535\n'),
                      (["0", "--idle-poll", "-5"], 'kv_server: bad --idle-poll "-5" (expected 0..1000000 microseconds)\n'),
                      (["0", "--idle-poll"], "kv_server: --idle-poll needs a value (microseconds)\n"),
                      (["0", "1", "2"], 'kv_server: unexpected argument "2"\n')):
        r = subprocess.run([exe, *bad], capture_output=True, text=True, timeout=30)
        if (r.returncode, r.stdout, r.stderr) != (1, "", want):
            print(f"kv_server_test: FAIL: kv_server {bad}: exit {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr!r}")
            return 1
    everything = (test_basic_commands, test_expiry, test_keys_across_shards, test_pipelining_and_inline,
                  test_big_value, test_malformed_input, test_random_input, test_redis_benchmark, test_shutdown)
    # Polling shards are never asleep, so nothing wakes them: commands that hop between
    # shards and the shutdown must still get through.
    polling = (test_basic_commands, test_keys_across_shards, test_pipelining_and_inline, test_redis_benchmark,
               test_shutdown)
    if not run_suite(exe, [], everything) or not run_suite(exe, ["--idle-poll", "200"], polling):
        return 1
    try:
        survives_fd_exhaustion([exe, "127.0.0.1:0", "2"],
                               r"kv server on 127\.0\.0\.1:(\d+) \(2 shards\); Ctrl-C stops it",
                               b"PING\r\n", b"+PONG\r\n")
    except Failure as e:
        print(f"kv_server_test: FAIL: out of file descriptors: {e}")
        return 1
    print("kv_server_test: OK (survived running out of file descriptors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
