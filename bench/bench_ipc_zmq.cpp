// Peer for corio's ipc queue: ZeroMQ (libzmq, C API) PUSH/PULL over ipc:// (a Unix socket
// under a fresh temp dir), 8-byte messages from one process to another.
//   BM_zmq_ipc_8B — the benchmark process binds PULL and receives; a forked child connects
//                   PUSH and sends. items_per_second = messages received per second.
// ZeroMQ gets its fast setup: messages of 8 bytes are "very small messages" stored inside
// zmq_msg_t (no allocation per message), blocking zmq_send/zmq_recv into caller buffers,
// high-water marks raised so the sender never stalls on a full pipe while the receiver
// drains (ZeroMQ batches writes to the socket itself), one I/O thread per context.
//
// The child is forked before any ZeroMQ state exists in it and creates its own context
// (a context must never cross fork). The fork, connect and the first message happen
// before the timed loop, so the figure is the steady-state message rate.
#include <benchmark/benchmark.h>

#include <zmq.h>

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace {

constexpr std::uint64_t zmq_batch = 1024;  // messages per benchmark iteration
constexpr int high_water_mark = 100'000;

struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/corio-bench-zmq-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path = tmpl;
  }
  ~temp_dir() {
    if (path.empty()) return;
    ::unlink((path + "/push-pull").c_str());
    ::rmdir(path.c_str());
  }
};

// The child: wait until the parent has bound, connect, send `count` sequence numbers
// 1..count, then wait until the parent has received them all (it writes to or closes
// done_fd) before closing. (With the default high-water mark, relying on zmq_ctx_term's
// infinite linger instead was seen to lose the tail of the stream with libzmq 4.3.4: the
// child exited 0 while the parent still waited.) Never returns.
[[noreturn]] void run_producer(const std::string& endpoint, int ready_fd, int done_fd,
                               std::uint64_t count) {
  char byte;
  if (::read(ready_fd, &byte, 1) != 1) ::_exit(3);
  void* ctx = zmq_ctx_new();
  void* push = ctx ? zmq_socket(ctx, ZMQ_PUSH) : nullptr;
  if (push == nullptr) ::_exit(4);
  zmq_setsockopt(push, ZMQ_SNDHWM, &high_water_mark, sizeof high_water_mark);
  if (zmq_connect(push, endpoint.c_str()) != 0) ::_exit(5);
  for (std::uint64_t i = 1; i <= count; ++i) {
    if (zmq_send(push, &i, sizeof i, 0) != static_cast<int>(sizeof i)) ::_exit(6);
  }
  (void)!::read(done_fd, &byte, 1);
  const int no_linger = 0;
  zmq_setsockopt(push, ZMQ_LINGER, &no_linger, sizeof no_linger);
  zmq_close(push);
  zmq_ctx_term(ctx);
  ::_exit(0);
}

void BM_zmq_ipc_8B(benchmark::State& state) {
  temp_dir dir;
  if (dir.path.empty()) {
    state.SkipWithError(("mkdtemp: " + std::string(std::strerror(errno))).c_str());
    return;
  }
  const std::string endpoint = "ipc://" + dir.path + "/push-pull";
  // One warm-up message before the timed loop, then zmq_batch per iteration.
  const std::uint64_t total = static_cast<std::uint64_t>(state.max_iterations) * zmq_batch + 1;

  int ready[2], done[2];
  if (::pipe(ready) != 0) {
    state.SkipWithError(("pipe: " + std::string(std::strerror(errno))).c_str());
    return;
  }
  if (::pipe(done) != 0) {
    state.SkipWithError(("pipe: " + std::string(std::strerror(errno))).c_str());
    ::close(ready[0]);
    ::close(ready[1]);
    return;
  }
  const pid_t child = ::fork();
  if (child < 0) {
    for (const int fd : {ready[0], ready[1], done[0], done[1]}) ::close(fd);
    state.SkipWithError(("fork: " + std::string(std::strerror(errno))).c_str());
    return;
  }
  if (child == 0) {
    ::close(ready[1]);
    ::close(done[1]);
    run_producer(endpoint, ready[0], done[0], total);
  }
  ::close(ready[0]);
  ::close(done[0]);

  void* ctx = zmq_ctx_new();
  void* pull = zmq_socket(ctx, ZMQ_PULL);
  zmq_setsockopt(pull, ZMQ_RCVHWM, &high_water_mark, sizeof high_water_mark);
  // A producer that died must fail the benchmark, not hang it.
  const int timeout_ms = 10'000;
  zmq_setsockopt(pull, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
  const bool bound = zmq_bind(pull, endpoint.c_str()) == 0;
  const std::string bind_error = bound ? "" : zmq_strerror(zmq_errno());
  if (bound) {
    const char go = 1;
    (void)!::write(ready[1], &go, 1);
  }
  ::close(ready[1]);  // without the byte (bind failed), EOF makes the child exit

  std::uint64_t value = 0;
  std::uint64_t received = 0;
  bool ok = false;
  if (!bound) {
    state.SkipWithError(("zmq_bind " + endpoint + ": " + bind_error).c_str());
  } else if (zmq_recv(pull, &value, sizeof value, 0) != static_cast<int>(sizeof value)) {
    state.SkipWithError("zmq_recv of the first message failed or timed out");
  } else {
    ok = true;
    ++received;
  }
  // A skipped state runs no iteration; leaving the loop early requires SkipWithError.
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < zmq_batch; ++i) {
      if (zmq_recv(pull, &value, sizeof value, 0) != static_cast<int>(sizeof value)) {
        ok = false;
        break;
      }
    }
    if (!ok) {
      state.SkipWithError("zmq_recv failed or timed out (did the producer process die?)");
      break;
    }
    received += zmq_batch;
  }
  if (ok) {
    const char bye = 1;
    (void)!::write(done[1], &bye, 1);
  } else {
    ::kill(child, SIGKILL);  // it may be blocked in zmq_send
  }
  ::close(done[1]);
  zmq_close(pull);
  zmq_ctx_term(ctx);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (ok && (value != total || received != total)) {
    state.SkipWithError("messages lost or out of order");
  } else if (ok && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
    state.SkipWithError("the producer process failed");
  }
  if (ok) state.SetItemsProcessed(static_cast<std::int64_t>(received - 1));
}
BENCHMARK(BM_zmq_ipc_8B)->UseRealTime();

}  // namespace
