#pragma once
// One connection of redis::client to one server (a single Redis, or one node of a
// cluster): the FIFO of pipelined commands, the handshake, reconnecting with backoff.
// redis_client.hpp has the contract; detail/cluster_router.hpp holds one of these per node.
//
// Who may touch it: the thread of the loop it was made on. Shared by the client's router
// and by its own reader, writer and reconnect coroutines (shared_from_this), so it lives
// until the last of them has ended.

#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "../../coro/task.hpp"
#include "../../runtime/event.hpp"
#include "../../runtime/stream.hpp"
#include "../redis_client.hpp"

namespace corio::redis::detail {

// One command from its sending to its reply. Shared by the FIFO and the waiting
// coroutine, which may give up (deadline, stop) before the reply comes.
struct pending {
  std::string bytes;  // the encoded command, kept for a re-send after a reconnect
  std::string name;
  bool idempotent = false;
  bool written = false;  // handed to a write: the server may have applied it
  std::optional<resp::reply> result;
  std::exception_ptr error;
  event done;

  // Ready to be queued again (after -LOADING, a redirection).
  void rearm() {
    result.reset();
    error = nullptr;
    written = false;
    done.reset();
  }
};
// `argv` encoded, as a command not yet sent.
std::shared_ptr<pending> make_pending(std::span<const std::string_view> argv, std::string name, bool idempotent);

// One TCP or Unix connection and the parser of its replies. Shared by the reader and
// the writer of its generation: a lost link is shut down, and freed only when both have
// let go, so the kernel never writes into a freed buffer.
struct link {
  explicit link(stream_socket s) : sock(std::move(s)) {}
  stream_socket sock;
  resp::reply_parser parser;
};

class connection : public std::enable_shared_from_this<connection> {
 public:
  // `address` is where to connect ("127.0.0.1:6379", "unix:/p"), without credentials
  // (those are in `o`).
  connection(options o, std::string address) : opts(std::move(o)), where(std::move(address)) {}

  // Connects and runs the handshake; with probe_cluster, CLUSTER SLOTS rides along and
  // its reply (an error on a server without cluster support) is left in `probe`.
  task<void> open();
  // Queues p; connects first (with backoff, for reconnect_for) when not connected.
  void enqueue(const std::shared_ptr<pending>& p);
  void close() noexcept;

  options opts;
  std::string where;  // the address for messages, without credentials
  client_stats stats;
  std::exception_ptr fatal;  // set by a refused handshake: every command fails with it
  bool probe_cluster = false;
  std::optional<resp::reply> probe;

 private:
  task<void> read_loop(std::shared_ptr<link> l, std::uint64_t gen);
  task<void> write_loop(std::shared_ptr<link> l, std::uint64_t gen);
  task<void> reconnect_loop();
  static task<resp::reply> read_reply(link& l, op_options deadline);
  void lost(std::uint64_t gen, const std::string& why);
  void fail_all(const std::exception_ptr& e);
  void start_writer();

  std::shared_ptr<link> link_;
  std::deque<std::shared_ptr<pending>> fifo_;  // sent or queued, in order
  std::size_t unwritten_ = 0;                  // the last entries of fifo_ not written yet
  std::uint64_t generation_ = 0;               // a reader or writer of an older one quits
  bool connected_ = false;
  bool ever_connected_ = false;  // a later open() is a reconnect
  bool writer_running_ = false;
  bool reconnecting_ = false;
  bool closed_ = false;
};

// Helpers shared by the connection and the client's command loop.
std::string upper_name(std::string_view s);
// The first word of an error reply: "MOVED", "LOADING", "WRONGPASS".
std::string error_code(const resp::reply& r);
// auth_error for WRONGPASS / NOAUTH / NOPERM, else server_error; `where` names the server.
std::exception_ptr error_for(const resp::reply& r, const std::string& name, const std::string& where);
std::string ms_text(std::chrono::milliseconds d);

}  // namespace corio::redis::detail
