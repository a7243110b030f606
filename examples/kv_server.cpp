// A key-value server speaking RESP2, the Redis protocol, well enough for redis-cli and
// redis-benchmark: strings with expiry, sharded across cores (docs/kv_server.md).
//
// Usage: kv_server [PORT | ADDRESS] [SHARDS] [--idle-poll MICROSECONDS]
//   PORT default 6380 on 127.0.0.1 (0 picks a free port), or a full ADDRESS such as
//   0.0.0.0:6380. SHARDS and --idle-poll default to corio::server_runtime_options(
//   shard_traffic::cross_shard) (runtime/server_defaults.hpp): one shard on a machine of
//   one or two CPUs (half the keys would hop to the other shard, and a hop waits while
//   that shard's CPU runs the clients), else one per CPU; each shard polls 50 us for new
//   work before it sleeps, yielding to waiting threads, so its clients' sends need not
//   wake a sleeping thread (a cost paid on the clients' CPU).
//
// Try it: `kv_server &`, then `redis-cli -p 6380 set greeting hello`, `redis-cli -p 6380
// get greeting`, then `kill -INT %1`.
//
// The model: every shard (one thread, one io_uring) listens on the port with SO_REUSEPORT
// and owns the keys whose hash modulo the shard count is its index. A connection lives on
// the shard that accepted it; it reads what the client sent (through one multishot
// receive into the shard's provided buffers when the kernel has them, else one recv per
// read: corio::buffered_reader), parses every complete
// command in place, runs them (commands for another shard's keys travel there with
// corio::submit_to, all of a batch's commands for one shard as one message, in order),
// and sends all the replies of the batch, in order, with one write (pipelining). Malformed input gets "-ERR Protocol error: ..."
// and the connection is closed, as Redis does.
#include "server_cli.hpp"

#include <corio/coro/task_group.hpp>
#include <corio/dist/command_parser.hpp>
#include <corio/dist/resp.hpp>
#include <corio/runtime/buffered_stream.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/runtime.hpp>
#include <corio/runtime/signal.hpp>
#include <corio/runtime/stream.hpp>
#include <corio/runtime/timer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kv/commands.hpp"
#include "kv/store.hpp"

using namespace std::chrono_literals;

namespace {

constexpr std::size_t initial_buffer = 16 * 1024;
// The reader's own buffer, used only by the plain-recv path when less than this is free
// in buf_ (then a recv fills it and read_some copies what fits): small, as buf_ takes
// every other read directly.
constexpr std::size_t reader_buffer = 512;
// A client that sends commands this big reads with plain recvs from then on (see session).
constexpr std::size_t big_command = 8 * 1024;
constexpr std::size_t shrink_above = 1024 * 1024;           // give big buffers back when idle
constexpr std::size_t query_buffer_limit = 1024ul * 1024 * 1024;  // Redis' client-query-buffer-limit
// Replies are sent once a batch is done, or earlier once they pass flush_above: after any
// command of a batch whose commands go to one shard, at the end of a segment of at most
// max_segment commands otherwise. A client pipelining many GETs of big values thus holds
// at most flush_above plus one value (max_segment values when they span shards) in its
// reply buffer.
constexpr std::size_t flush_above = 1024 * 1024;
constexpr std::size_t max_segment = 64;

// stores[k] belongs to shard k: touched only by code running there.
struct server_state {
  std::vector<std::unique_ptr<kv::store>> stores;
};

// How far a run of commands got: the next command to run, and whether QUIT ended it.
struct progress {
  std::size_t next;
  bool quit;
};

struct parsed_command {
  std::size_t first;  // index of argv[0] in the connection's argument list
  std::size_t count;
  kv::command_id id;
  kv::route where;
};

// One client. Lives in its coroutine frame on the shard that accepted it; the views in
// `argv` point into `buf`, which is neither moved nor compacted while a batch runs (other
// shards read them during submit_to, while this coroutine is suspended).
//
// Reads: commands are parsed in place from buf_, one contiguous buffer that grows to the
// query buffer limit (a value may be that big), which a buffered_reader's fixed buffer
// cannot be. So in_ serves only as the receiver: with provided buffers its read_some
// copies what the multishot receive queued straight from the ring's 4 KiB buffers into
// buf_'s free tail — one copy, as a recv into buf_ makes in the kernel — and the receive
// stays armed while a batch runs, so the next read often finds bytes already there (no
// system call, no suspension). But a value of many ring buffers costs a kernel receive,
// a CQE and a copy per 4 KiB buffer where a recv into buf_ takes it whole (16 KiB SETs
// took 1.3x the CPU, 64 KiB SETs 1.46x, 1 MiB SETs 1.7x): once a client sent a command
// of big_command bytes or more, its reads are plain recvs straight into buf_ for good
// (set_direct_reads). Without them (an older kernel, CORIO_DISABLE_FEATURES,
// the epoll backend) read_some is one recv into buf_, as before.
class session {
 public:
  session(server_state& state, corio::tcp_stream& conn) : state_(state), conn_(conn), in_(conn, reader_buffer) {
    (void)in_.use_provided_buffers();  // false: plain recv
  }

  [[nodiscard]] corio::task<void> run();

 private:
  std::span<const std::string_view> args(const parsed_command& c) const {
    return std::span(argv_).subspan(c.first, c.count);
  }
  // Before shard `t` runs commands [i, j) against its store `s`:
  // has it start loading what their keys will touch, so the lookups' cache misses overlap.
  void prefetch_keys(const kv::store& s, unsigned t, std::size_t i, std::size_t j);
  // Runs the batch in order; false after QUIT (the rest of the batch is dropped, as Redis).
  [[nodiscard]] corio::task<bool> run_batch();
  // Commands [i, j) of the batch, for several shards: each shard runs its own commands
  // in order, all at once, and the replies are put back in command order.
  [[nodiscard]] corio::task<bool> run_sharded(std::size_t i, std::size_t j);
  // A command whose keys span shards, or DBSIZE / FLUSHALL.
  [[nodiscard]] corio::task<void> run_spanning(const parsed_command& c);
  bool grow();
  // Moves the buffered bytes [0, end_) into a new buffer of `cap` bytes.
  void reallocate(std::size_t cap);
  // Sends out_ (one send call when the kernel takes it all) and empties it.
  [[nodiscard]] corio::task<void> flush();

  server_state& state_;
  corio::tcp_stream& conn_;
  corio::buffered_reader in_;  // the only receiver of conn_ (see above)
  std::unique_ptr<char[]> buf_ = std::make_unique_for_overwrite<char[]>(initial_buffer);
  std::size_t cap_ = initial_buffer;
  std::size_t end_ = 0;
  corio::resp::command_parser parser_;  // keeps its place in a command that arrives in pieces
  std::vector<std::string_view> argv_;
  std::vector<parsed_command> batch_;
  std::string out_;
  std::vector<std::string> parts_;      // run_sharded: the replies of each shard
  std::vector<std::size_t> reply_end_;  // run_sharded: where each command's reply ends in its part
  std::vector<std::size_t> offsets_;    // run_sharded: how much of each part is merged
  // prefetch_keys: the keys of the commands about to run on one shard. The shards of a
  // segment run one after the other (the connection awaits each), so one list serves all.
  std::vector<std::string_view> keys_;
};

bool session::grow() {
  if (cap_ >= query_buffer_limit) return false;
  reallocate(std::min(cap_ * 2, query_buffer_limit));
  return true;
}

void session::reallocate(std::size_t cap) {
  auto fresh = std::make_unique_for_overwrite<char[]>(cap);
  std::memcpy(fresh.get(), buf_.get(), end_);
  buf_ = std::move(fresh);
  cap_ = cap;
}

void session::prefetch_keys(const kv::store& s, unsigned t, std::size_t i, std::size_t j) {
  keys_.clear();
  for (std::size_t k = i; k < j; ++k) {
    const parsed_command& c = batch_[k];
    // A command routed to one shard has a key, and its first key is argv[1].
    if (c.where.kind == kv::route_kind::one_shard && c.where.shard == t) keys_.push_back(argv_[c.first + 1]);
  }
  s.prefetch(keys_);
}

corio::task<void> session::flush() {
  for (std::size_t sent = 0; sent < out_.size();)
    sent += static_cast<std::size_t>(co_await corio::send(conn_.fd(), std::as_bytes(std::span(out_).subspan(sent))));
  out_.clear();
}

corio::task<void> session::run() {
  std::size_t need = 0;  // a partial command can complete only once end_ >= need
  for (;;) {
    if (end_ == cap_ && !grow()) co_return;  // past the query buffer limit: drop the client
    const std::size_t n = co_await in_.read_some(std::as_writable_bytes(std::span(buf_.get() + end_, cap_ - end_)));
    if (n == 0) co_return;  // the client closed its side
    end_ += n;
    if (end_ < need) continue;

    // Parse every complete command in the buffer.
    argv_.clear();
    batch_.clear();
    std::size_t pos = 0;
    std::optional<std::string> protocol_error;
    need = 0;
    const unsigned shards = corio::shard_count();
    while (pos < end_) {
      const std::size_t first = argv_.size();
      const kv::resp::parse_result r = parser_.parse(std::string_view(buf_.get() + pos, end_ - pos), argv_);
      if (r.status == kv::resp::parse_status::incomplete) {
        need = r.need;  // relative to the command's start, which compaction moves to 0
        if (need >= big_command) in_.set_direct_reads(true);
        break;
      }
      if (r.status == kv::resp::parse_status::error) {
        protocol_error = "ERR " + r.error_text();
        break;
      }
      pos += r.consumed;
      if (argv_.size() == first) continue;  // an empty command
      const std::size_t count = argv_.size() - first;
      const kv::command_id id = kv::lookup(argv_[first]);
      batch_.push_back({first, count, id, kv::route_of(id, std::span(argv_).subspan(first, count), shards)});
    }

    // Run it and answer with one write.
    out_.clear();
    const bool keep = co_await run_batch();
    if (keep && protocol_error) kv::resp::append_error(out_, *protocol_error);
    co_await flush();
    if (!keep || protocol_error) {
      // The client may still be sending: a lingering close keeps a reset from
      // destroying the reply (stream.hpp). Through in_, the socket's one receiver: its
      // multishot receive is cancelled rather than left armed beside the linger's recvs,
      // where it took part of what arrived and held the shard's ring buffers meanwhile.
      co_await in_.linger(std::size_t{1} << 20, std::chrono::seconds(1));
      co_return;
    }

    // Keep the partial command, at the start of the buffer.
    if (pos == end_) {
      end_ = 0;
    } else if (pos > 0) {
      std::memmove(buf_.get(), buf_.get() + pos, end_ - pos);
      end_ -= pos;
    }
    if (cap_ > shrink_above && end_ <= initial_buffer && need <= initial_buffer) reallocate(initial_buffer);
    if (out_.capacity() > shrink_above) {
      out_.clear();
      out_.shrink_to_fit();
    }
  }
}

corio::task<bool> session::run_batch() {
  const unsigned here = corio::this_shard();
  auto spans_shards = [](const parsed_command& c) {
    return c.where.kind == kv::route_kind::split || c.where.kind == kv::route_kind::all_shards;
  };
  std::size_t i = 0;
  while (i < batch_.size()) {
    if (spans_shards(batch_[i])) {
      co_await run_spanning(batch_[i]);
      ++i;
      continue;
    }
    // A segment: the commands up to the next spanning one, or up to and including QUIT.
    constexpr unsigned none = ~0u;
    unsigned target = none;
    bool several = false;
    std::size_t j = i;
    while (j < batch_.size() && !spans_shards(batch_[j]) && j - i < max_segment) {
      const parsed_command& c = batch_[j++];
      if (c.where.kind == kv::route_kind::one_shard) {
        if (target == none) target = c.where.shard;
        several |= c.where.shard != target;
      }
      if (c.id == kv::command_id::quit) break;
    }
    if (several) {
      if (!co_await run_sharded(i, j)) co_return false;
      if (out_.size() >= flush_above) co_await flush();  // bound the replies held per client
      i = j;
      continue;
    }
    // One shard (keyless commands join it): replies go straight into out_. The target
    // stops early once out_ passes flush_above; then the replies go out and it goes on.
    if (target == none) target = here;
    while (i < j) {
      auto run_range = [this, i, j, target]() -> progress {
        kv::store& s = *state_.stores[target];
        prefetch_keys(s, target, i, j);
        for (std::size_t k = i; k < j;) {
          if (!kv::execute(s, batch_[k].id, args(batch_[k]), out_)) return {k + 1, true};
          if (++k < j && out_.size() >= flush_above) return {k, false};
        }
        return {j, false};
      };
      // out_ and the arguments are this coroutine's; the target uses them while it waits.
      const progress p = target == here ? run_range() : co_await corio::submit_to(target, run_range);
      if (p.quit) co_return false;
      if (out_.size() >= flush_above) co_await flush();
      i = p.next;
    }
  }
  co_return true;
}

corio::task<bool> session::run_sharded(std::size_t i, std::size_t j) {
  const unsigned here = corio::this_shard();
  const unsigned shards = corio::shard_count();
  if (parts_.size() < shards) parts_.resize(shards);
  reply_end_.resize(j - i);
  auto shard_of = [here](const parsed_command& c) {
    return c.where.kind == kv::route_kind::one_shard ? c.where.shard : here;
  };
  // Each shard runs its commands of [i, j) in order into its own part, noting where each
  // reply ends; QUIT can only be the segment's last command and runs on this shard.
  auto run_part = [&](unsigned t) {
    kv::store& s = *state_.stores[t];
    std::string& part = parts_[t];
    part.clear();
    prefetch_keys(s, t, i, j);
    bool keep = true;
    for (std::size_t k = i; k < j; ++k) {
      if (shard_of(batch_[k]) != t) continue;
      keep &= kv::execute(s, batch_[k].id, args(batch_[k]), part);
      reply_end_[k - i] = part.size();
    }
    return keep;
  };
  bool keep = run_part(here);
  for (unsigned t = 0; t < shards; ++t) {
    if (t == here) continue;
    bool used = false;
    for (std::size_t k = i; k < j && !used; ++k) used = shard_of(batch_[k]) == t;
    if (used) keep &= co_await corio::submit_to(t, [&run_part, t] { return run_part(t); });
  }
  // Interleave the parts back into command order.
  if (offsets_.size() < shards) offsets_.resize(shards);
  std::fill(offsets_.begin(), offsets_.end(), 0);
  for (std::size_t k = i; k < j; ++k) {
    const unsigned t = shard_of(batch_[k]);
    out_.append(parts_[t], offsets_[t], reply_end_[k - i] - offsets_[t]);
    offsets_[t] = reply_end_[k - i];
  }
  co_return keep;
}

corio::task<void> session::run_spanning(const parsed_command& c) {
  const unsigned shards = corio::shard_count();
  const unsigned here = corio::this_shard();
  const std::span<const std::string_view> argv = args(c);
  // Runs fn(store, shard) on every shard in turn, locally without a message.
  auto on_each = [&](auto fn) -> corio::task<void> {
    for (unsigned s = 0; s < shards; ++s) {
      auto call = [&fn, s, this] { return fn(*state_.stores[s], s); };
      if (s == here)
        call();
      else
        co_await corio::submit_to(s, call);
    }
  };
  switch (c.id) {
    case kv::command_id::del:
    case kv::command_id::exists:
    case kv::command_id::dbsize: {
      std::int64_t total = 0;
      co_await on_each([&](kv::store& st, unsigned s) {
        if (c.id == kv::command_id::del)
          total += kv::del_part(st, argv, s, shards);
        else if (c.id == kv::command_id::exists)
          total += kv::exists_part(st, argv, s, shards);
        else
          total += static_cast<std::int64_t>(st.size());
      });
      kv::resp::append_integer(out_, total);
      break;
    }
    case kv::command_id::mget: {
      std::vector<std::optional<std::string>> values(argv.size() - 1);
      co_await on_each([&](kv::store& st, unsigned s) { kv::mget_part(st, argv, s, shards, values); });
      kv::resp::append_array_header(out_, values.size());
      for (const auto& v : values)
        if (v)
          kv::resp::append_bulk(out_, *v);
        else
          kv::resp::append_null(out_);
      break;
    }
    case kv::command_id::mset:
      co_await on_each([&](kv::store& st, unsigned s) { kv::mset_part(st, argv, s, shards); });
      kv::resp::append_simple(out_, "OK");
      break;
    case kv::command_id::flushall:
      co_await on_each([](kv::store& st, unsigned) { st.clear(); });
      kv::resp::append_simple(out_, "OK");
      break;
    default:
      break;  // route_of sends no other command here
  }
}

corio::task<void> serve_connection(server_state& state, corio::tcp_stream conn) {
  try {
    session s(state, conn);
    co_await s.run();
  } catch (const corio::operation_cancelled&) {
    // Shutdown: the server asked this connection to stop.
  } catch (const std::system_error&) {
    // The client reset the connection: nothing to answer.
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "kv_server: out of memory for a client's buffer; dropping the client\n");
  }
}

// Runs on one shard until that shard's loop is asked to stop (the runtime's shutdown).
corio::task<void> serve(server_state& state, corio::address at) {
  auto listener = corio::tcp_listener::bind(at, {.reuse_port = true});
  corio::task_group connections;
  try {
    for (;;) {
      bool pause = false;
      try {
        corio::tcp_stream conn = co_await listener.accept();
        connections.spawn(serve_connection(state, std::move(conn)));
      } catch (const corio::operation_cancelled&) {
        throw;
      } catch (const std::system_error& e) {
        // EMFILE, ENFILE, ENOBUFS...: the client stays in the backlog. Retry soon instead
        // of spinning on the error, or of leaving with connections still running (the
        // task_group would terminate the program), as corio::server does.
        std::fprintf(stderr, "kv_server: %s; retrying in 20 ms\n", e.what());
        pause = true;
      }
      if (pause) co_await corio::sleep_for(20ms);  // a shutdown cancels it
    }
  } catch (const corio::operation_cancelled&) {
    // Stop accepting; connections.wait() forwards the stop to the connections.
  }
  co_await connections.wait();
}

// The periodic half of expiry (the other half is lazy, on access): see store.hpp.
corio::task<void> sweep_expired(kv::store& store) {
  try {
    for (;;) {
      co_await corio::sleep_for(100ms);
      store.sweep(kv::now_ms());
    }
  } catch (const corio::operation_cancelled&) {
  }
}

corio::task<int> run_server(corio::address at, corio::signal_set& signals, server_state& state) {
  // Bind once here to learn the port (port 0 picks one), then every shard binds the same
  // address with SO_REUSEPORT.
  const corio::address bound = corio::tcp_listener::bind(at, {.reuse_port = true}).local_address();
  for (unsigned shard = 0; shard < corio::shard_count(); ++shard)
    co_await corio::submit_to(shard, [&state, bound, shard] {
      corio::loop::this_loop().spawn(serve(state, bound));
      corio::loop::this_loop().spawn(sweep_expired(*state.stores[shard]));
    });
  std::printf("kv server on %s (%u shards); Ctrl-C stops it\n", bound.to_string().c_str(), corio::shard_count());
  std::fflush(stdout);
  const int sig = co_await signals.wait();
  std::printf("%s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  std::fflush(stdout);
  co_return 0;  // the runtime now stops every shard's loop and waits for serve() to end
}

corio::address parse_listen(const char* arg) {
  const std::string s = arg;
  if (s.find(':') != std::string::npos) return corio::address::parse(s);
  return corio::address::parse("127.0.0.1:" + s);  // a bare port; parse checks the range
}

}  // namespace

constexpr std::string_view usage_head =
    "usage: kv_server [PORT | ADDRESS] [SHARDS] [--idle-poll MICROSECONDS]\n"
    "  PORT default 6380 on 127.0.0.1 (0 picks a free port), or a full ADDRESS (0.0.0.0:6380)\n";

int main(int argc, char** argv) {
  const std::string usage = std::string(usage_head) + std::string(examples::server_usage_shards_hopping) +
                            std::string(examples::server_usage_idle_poll);
  examples::handle_help(argc, argv, usage, {"--idle-poll"});
  try {
    std::vector<const char*> args;
    corio::runtime_options options = corio::server_runtime_options(corio::shard_traffic::cross_shard);
    for (int i = 1; i < argc; ++i)
      if (!examples::take_idle_poll(i, argc, argv, options)) args.push_back(argv[i]);
    if (args.size() > 2) throw std::invalid_argument(std::string("unexpected argument \"") + args[2] + "\"");
    const corio::address at = parse_listen(!args.empty() ? args[0] : "6380");
    if (args.size() > 1) options.shards = examples::parse_shards(args[1]);
    // Block the signals before the runtime starts its threads, so every shard inherits
    // the mask and only the signalfd sees them.
    corio::signal_set signals{SIGINT, SIGTERM};
    corio::runtime rt(options);
    server_state state;
    for (unsigned k = 0; k < rt.shard_count(); ++k) state.stores.push_back(std::make_unique<kv::store>());
    const int code = rt.run(run_server(at, signals, state));
    std::printf("stopped\n");
    return code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kv_server: %s\n", e.what());
    return 1;
  }
}
