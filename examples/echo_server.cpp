// A TCP echo server on every core: one listener per shard on the same port
// (SO_REUSEPORT: the kernel spreads connections across shards), one coroutine per
// connection, and a graceful shutdown on SIGINT or SIGTERM: stop accepting, ask every
// connection to stop, wait for them to unwind, exit 0.
//
// Usage: echo_server [ADDRESS] [SHARDS] [--idle-poll MICROSECONDS]
//   ADDRESS default 127.0.0.1:7000 (port 0 picks a free one). SHARDS and --idle-poll
//   default to corio::server_runtime_options() (runtime/server_defaults.hpp): one shard
//   per CPU, each polling 50 us (yielding to waiting threads) before it sleeps.
//
// Try it: `echo_server &`, then `nc 127.0.0.1 7000`, then `kill -INT %1`.
#include "server_cli.hpp"

#include <corio/coro/task_group.hpp>
#include <corio/runtime/buffered_stream.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/runtime.hpp>
#include <corio/runtime/signal.hpp>
#include <corio/runtime/stream.hpp>
#include <corio/runtime/timer.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

namespace {

corio::task<void> echo(corio::tcp_stream conn) {
  // A buffered reader receives through one multishot request into the loop's provided
  // buffers where the kernel has them (Linux 6.0), else with one recv per fill. Each fill
  // takes everything that arrived, so several messages go back in one send.
  corio::buffered_reader in(conn, 4096);
  (void)in.use_provided_buffers();
  try {
    for (;;) {
      if (co_await in.fill() == 0) break;  // the client closed its side
      const std::span<const std::byte> got = in.buffered();
      co_await conn.write_all(got);
      in.consume(got.size());
    }
  } catch (const corio::operation_cancelled&) {
    // Shutdown: the server asked this connection to stop.
  } catch (const std::system_error&) {
    // The client reset the connection: nothing to answer.
  }
}

// Runs on one shard until that shard's loop is asked to stop (the runtime's shutdown).
corio::task<void> serve(corio::address at) {
  auto listener = corio::tcp_listener::bind(at, {.reuse_port = true});
  corio::task_group connections;
  try {
    for (;;) {
      bool pause = false;
      try {
        connections.spawn(echo(co_await listener.accept()));
      } catch (const corio::operation_cancelled&) {
        throw;
      } catch (const std::system_error& e) {
        // EMFILE, ENFILE, ENOBUFS...: the client stays in the backlog. Retry soon instead
        // of spinning on the error, or of leaving with connections still running (the
        // task_group would terminate the program), as corio::server does.
        std::fprintf(stderr, "echo_server: %s; retrying in 20 ms\n", e.what());
        pause = true;
      }
      if (pause) co_await corio::sleep_for(std::chrono::milliseconds(20));  // a shutdown cancels it
    }
  } catch (const corio::operation_cancelled&) {
    // Stop accepting. The stop that cancelled accept() reaches the connections through
    // connections.wait(), which forwards this task's stop token to the group.
  }
  co_await connections.wait();
}

corio::task<int> run_server(corio::address at, corio::signal_set& signals) {
  // Bind once here to learn the port (port 0 picks one), then every shard binds the same
  // address with SO_REUSEPORT.
  const corio::address bound = corio::tcp_listener::bind(at, {.reuse_port = true}).local_address();
  for (unsigned shard = 0; shard < corio::shard_count(); ++shard)
    co_await corio::submit_to(shard, [bound] { corio::loop::this_loop().spawn(serve(bound)); });
  std::printf("echo server on %s (%u shards); Ctrl-C stops it\n", bound.to_string().c_str(),
              corio::shard_count());
  std::fflush(stdout);
  const int sig = co_await signals.wait();
  std::printf("%s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  std::fflush(stdout);
  co_return 0;  // the runtime now stops every shard's loop and waits for serve() to end
}

}  // namespace

constexpr std::string_view usage_head =
    "usage: echo_server [ADDRESS] [SHARDS] [--idle-poll MICROSECONDS]\n"
    "  ADDRESS default 127.0.0.1:7000 (port 0 picks a free one)\n";

int main(int argc, char** argv) {
  const std::string usage = std::string(usage_head) + std::string(examples::server_usage_shards) +
                            std::string(examples::server_usage_idle_poll);
  examples::handle_help(argc, argv, usage, {"--idle-poll"});
  try {
    std::vector<std::string> args;
    corio::runtime_options options = corio::server_runtime_options();
    for (int i = 1; i < argc; ++i)
      if (!examples::take_idle_poll(i, argc, argv, options)) args.emplace_back(argv[i]);
    const corio::address at = corio::address::parse(!args.empty() ? args[0] : "127.0.0.1:7000");
    if (args.size() > 1) options.shards = examples::parse_shards(args[1]);
    // Block the signals before the runtime starts its threads, so every shard inherits
    // the mask and only the signalfd sees them.
    corio::signal_set signals{SIGINT, SIGTERM};
    corio::runtime rt(options);
    const int code = rt.run(run_server(at, signals));
    std::printf("stopped\n");
    return code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
}
