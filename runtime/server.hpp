#pragma once
// server: a TCP server on every shard of a corio::runtime, with timeouts, a connection
// limit and graceful shutdown.
//
//     corio::server srv(corio::address::parse("0.0.0.0:8080"),
//                       [](corio::connection& c) -> corio::task<void> {
//                         for (;;) {
//                           std::string_view line = co_await c.reader().read_until("\n", 1024);
//                           if (line.empty()) co_return;               // the client closed
//                           co_await c.writer().write(line);
//                           co_await c.writer().flush();
//                         }
//                       });
//     std::printf("listening on %s\n", srv.local_address().to_string().c_str());
//     srv.run();        // a server's runtime (server_defaults.hpp) until SIGINT or SIGTERM
//
// The model
// - The constructor binds the address (port 0 picks a free one: local_address() tells
//   which); clients may connect from then on (they wait in the backlog). serve() starts
//   an accept loop on every shard, each with its own SO_REUSEPORT listener on that
//   address, so the kernel spreads connections across shards. Each connection runs one
//   coroutine on the shard that accepted it: the handler, given a `connection` (the
//   stream plus a buffered reader and writer). The handler is called on every shard, so
//   it must be safe to call from several threads at once (a lambda without mutable
//   shared state is).
// - Memory per connection: the coroutine frames (recycled) and one allocation holding the
//   read and write buffers (server_options sizes). Nothing else.
// - Receives (server_options::provided_buffers, on by default): each connection's reader
//   keeps one multishot receive armed into the shard loop's ring of provided buffers
//   (buffered_stream.hpp), one SQE per connection instead of one per receive, where the
//   kernel has it (kernel_feature::provided_buffers and recv_multishot, Linux 6.0);
//   elsewhere one recv per fill(). Either way the handler sees the same bytes.
// - Connection limit (max_connections, all shards together): a connection beyond it is
//   accepted and closed at once, so its client sees the close (EOF, or a reset if it had
//   sent data) instead of hanging in the backlog; stats().rejected counts them.
// - Timeouts apply to receives through connection::reader() (its receive hooks):
//   idle_timeout bounds the wait for the first byte of a message (the reader holds no
//   unconsumed byte); read_timeout bounds the rest of a message, measured from the first
//   receive that found part of it buffered until the handler consumes something. They
//   are enforced by one sweeper per shard, not by a kernel timer per receive (that costs
//   a linked timeout request per receive): every timeout/4 (at least 5 ms, at most
//   250 ms) it shuts down the reading side of connections past their deadline, so the
//   pending receive ends as end of stream (read_until returns empty or throws
//   end_of_stream) and the handler returns; the server counts stats().timed_out.
//   Receives on connection::stream() directly, receives given explicit op_options, and
//   writes get no server timeout. Zero disables a timeout.
// - Graceful shutdown, on stop() (any thread), on a signal of the signal_set given to
//   serve(), or when serve()'s own stop token is requested: (1) every shard stops
//   accepting and closes its listener; (2) connections waiting for a new message (an
//   idle receive: nothing buffered) get their reading side shut down, so that receive
//   ends as end of stream, and a connection that starts such a receive later fails it
//   with operation_cancelled: a request in flight is answered, then the connection
//   closes (connection::draining() lets a protocol say so, e.g. `Connection: close`);
//   (3) at shutdown_grace after the stop, the handlers still running get a stop request
//   (their stop token: pending I/O throws operation_cancelled); (4) serve() returns when
//   every connection coroutine has ended. Handlers must honour their stop token
//   (corio I/O and timers do); one that ignores it delays (4).
// - At start, serve() prints one line to stderr: the address, the shard count and the
//   backend the shards run on ("corio::server: serving 127.0.0.1:8080 on 2 shards,
//   io_uring backend"; epoll where io_uring is refused, see backend.hpp).
// - Errors in handlers: operation_cancelled, timed_out, end_of_stream and
//   std::system_error (peer reset...) close the connection quietly; any other exception
//   closes it, counts in stats().failed and is printed to stderr. Accept errors such as
//   EMFILE pause that shard's accepting briefly and retry.
//
// Who may touch it: construct it anywhere; serve() runs on one shard of a running
// runtime (the thread that created the signal_set, if one is given) and only once.
// stop() and stats() are thread-safe. Destroy it after serve() returned (or if serve()
// never ran).

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <vector>

#include "../coro/task.hpp"
#include "address.hpp"
#include "buffered_stream.hpp"
#include "runtime.hpp"
#include "server_defaults.hpp"
#include "signal.hpp"
#include "stream.hpp"

namespace corio {

struct server_options {
  std::size_t max_connections = 10'000;  // all shards together
  std::chrono::milliseconds idle_timeout{60'000};  // 0: none
  std::chrono::milliseconds read_timeout{30'000};  // 0: none
  std::chrono::milliseconds shutdown_grace{5'000};
  std::size_t read_buffer_size = buffered_reader::default_capacity;
  std::size_t write_buffer_size = buffered_writer::default_capacity;
  // Multishot receives into provided buffers where the kernel has them (see above).
  bool provided_buffers = true;
  int backlog = SOMAXCONN;
};

struct server_stats {
  std::size_t accepted = 0;   // connections handed to the handler
  std::size_t rejected = 0;   // closed at once: over max_connections
  std::size_t active = 0;     // handlers running now
  std::size_t timed_out = 0;  // closed by idle_timeout or read_timeout
  std::size_t failed = 0;     // handlers that ended with an unexpected exception
};

class server;

namespace detail {
struct server_shard;  // server.cpp: one shard's listener, tokens and connection count
}

// What the handler gets: the accepted stream with a buffered reader (carrying the
// server's timeouts) and writer. Lives in the connection's coroutine frame; valid until
// the handler returns.
class connection {
 public:
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  tcp_stream& stream() noexcept { return stream_; }
  buffered_reader& reader() noexcept { return reader_; }
  buffered_writer& writer() noexcept { return writer_; }
  // True once the server is shutting down: answer the request in hand, then return.
  bool draining() const noexcept;
  // The shard running this connection.
  unsigned shard() const noexcept;

 private:
  friend class server;
  connection(tcp_stream& stream, std::byte* buffers, const server_options& options,
             detail::server_shard& shard) noexcept;
  ~connection();
  static op_options before_receive(void* self, const buffered_reader& reader, bool buffer_empty);
  static void after_receive(void* self) noexcept;
  static const buffered_reader::receive_hooks hooks;

  tcp_stream& stream_;
  buffered_reader reader_;
  buffered_writer writer_;
  detail::server_shard& shard_;
  const server_options& options_;
  // read_timeout bookkeeping: when the current partial message was first found waiting,
  // and the reader's consumed_total() then (a change means a new message began).
  std::chrono::steady_clock::time_point partial_since_{};
  std::size_t partial_mark_ = static_cast<std::size_t>(-1);
  // For the shard's sweeper (server.cpp): the deadline of the receive in flight (max():
  // none), whether it is an idle receive, whether the sweeper shut the connection down
  // for a timeout, and the shard's intrusive list of connections.
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  bool idle_receive_ = false;
  bool expired_ = false;
  connection* prev_ = nullptr;
  connection* next_ = nullptr;
};

class server {
 public:
  using handler_type = std::function<task<void>(connection&)>;

  // Binds `at` now (std::system_error "bind 127.0.0.1:80: Address already in use").
  server(const address& at, handler_type handler, server_options options = {});
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // The bound address, with the port the kernel chose for port 0.
  const address& local_address() const noexcept { return local_; }
  // The listening socket the constructor bound (shard 0 accepts on it), until serve()
  // takes it over; -1 afterwards. For code that hands the socket to forked worker
  // processes (ipc/prefork.hpp) before serving.
  int listener_fd() const noexcept { return first_ ? first_->fd() : -1; }

  // Serves on every shard of the running runtime until stop(), a signal of `signals`
  // (optional), or a stop request on the awaiting coroutine's token; then shuts down as
  // described above. Returns the signal number, or 0. std::logic_error outside a runtime
  // or when called twice.
  [[nodiscard]] task<int> serve(signal_set* signals = nullptr);

  // Convenience: blocks SIGINT and SIGTERM, runs a runtime (`options`; by default a
  // server's, server_defaults.hpp) serving until one of them or stop(), and returns the
  // signal number (or 0). Call it from main() before starting other threads (signal.hpp
  // explains why).
  int run(runtime_options options = server_runtime_options());

  // Thread-safe; starts the graceful shutdown (or makes serve() return at once if it has
  // not started yet).
  void stop() noexcept { stop_.request_stop(); }

  server_stats stats() const noexcept;

 private:
  friend class connection;
  void start_shard(unsigned index);
  task<void> accept_loop(detail::server_shard& shard);
  task<void> sweep_loop(detail::server_shard& shard);
  task<void> run_connection(detail::server_shard& shard, tcp_stream stream);
  static task<void> finish_shard(detail::server_shard& shard, std::chrono::steady_clock::time_point deadline);

  handler_type handler_;
  server_options options_;
  address local_;
  std::optional<tcp_listener> first_;  // bound by the constructor, used by shard 0
  std::vector<std::unique_ptr<detail::server_shard>> shards_;
  std::stop_source stop_;
  bool served_ = false;

  std::atomic<std::size_t> active_{0};
  std::atomic<std::size_t> accepted_{0};
  std::atomic<std::size_t> rejected_{0};
  std::atomic<std::size_t> timed_out_{0};
  std::atomic<std::size_t> failed_{0};
};

}  // namespace corio
