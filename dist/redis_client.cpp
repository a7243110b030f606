#include "redis_client.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <exception>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "../coro/when_any.hpp"
#include "../runtime/address.hpp"
#include "../runtime/errors.hpp"
#include "../runtime/event.hpp"
#include "../runtime/loop.hpp"
#include "../runtime/stream.hpp"
#include "../runtime/timer.hpp"
#include "resp.hpp"

namespace corio::redis {

using std::chrono::steady_clock;

namespace {

constexpr std::size_t read_chunk = 64 * 1024;

std::string upper(std::string_view s) {
  std::string out(s.substr(0, 32));
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// Commands whose second sending cannot change anything, so a command lost with its
// connection may be sent again: the read-only ones.
bool read_only(std::string_view name, std::span<const std::string_view> argv) {
  static constexpr std::string_view names[] = {
      "GET",    "MGET",   "EXISTS", "TTL",     "PTTL",   "TYPE",  "STRLEN",   "GETRANGE",  "XLEN",
      "XRANGE", "XREVRANGE", "XPENDING", "XINFO", "PING", "ECHO", "INFO",  "DBSIZE",  "HGET",
      "HGETALL", "HMGET", "HLEN",   "HEXISTS", "LRANGE", "LLEN", "LINDEX", "SCARD",   "SMEMBERS",
      "SISMEMBER", "ZRANGE", "ZCARD", "ZSCORE", "KEYS",  "SCAN", "TIME",
  };
  if (std::find(std::begin(names), std::end(names), name) != std::end(names)) return true;
  return (name == "CONFIG" || name == "CLIENT") && argv.size() > 1 &&
         (upper(argv[1]) == "GET" || upper(argv[1]) == "GETNAME" || upper(argv[1]) == "ID");
}

std::string code_of(const resp::reply& r) { return r.str.substr(0, r.str.find(' ')); }

std::exception_ptr error_for(const resp::reply& r, const std::string& name, const std::string& where) {
  std::string code = code_of(r);
  const std::string what = "redis " + where + ": " + name + ": " + r.str;
  if (code == "WRONGPASS" || code == "NOAUTH" || code == "NOPERM")
    return std::make_exception_ptr(auth_error(what, std::move(code)));
  return std::make_exception_ptr(server_error(what, std::move(code)));
}

std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

}  // namespace

namespace detail {

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
};

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
  connection(options o, endpoint ep) : opts(std::move(o)), where(ep.address), ep_(std::move(ep)) {}

  task<void> open();
  void enqueue(const std::shared_ptr<pending>& p);
  void close() noexcept;

  options opts;
  std::string where;  // the address for messages, without credentials
  client_stats stats;
  std::exception_ptr fatal;  // set by a refused handshake: every command fails with it

 private:
  task<void> read_loop(std::shared_ptr<link> l, std::uint64_t gen);
  task<void> write_loop(std::shared_ptr<link> l, std::uint64_t gen);
  task<void> reconnect_loop();
  static task<resp::reply> read_reply(link& l, op_options deadline);
  void lost(std::uint64_t gen, const std::string& why);
  void fail_all(const std::exception_ptr& e);
  void start_writer();

  endpoint ep_;
  std::shared_ptr<link> link_;
  std::deque<std::shared_ptr<pending>> fifo_;  // sent or queued, in order
  std::size_t unwritten_ = 0;                  // the last entries of fifo_ not written yet
  std::uint64_t generation_ = 0;               // a reader or writer of an older one quits
  bool connected_ = false;
  bool writer_running_ = false;
  bool reconnecting_ = false;
  bool closed_ = false;
};

task<resp::reply> connection::read_reply(link& l, op_options deadline) {
  for (;;) {
    if (auto r = l.parser.next()) co_return std::move(*r);
    const std::span<char> room = l.parser.prepare(read_chunk);
    const int n = co_await l.sock.read_some(std::as_writable_bytes(room), deadline);
    if (n == 0) throw connection_error("the server closed the connection");
    l.parser.commit(static_cast<std::size_t>(n));
  }
}

task<void> connection::open() {
  const address to = address::parse(ep_.address);
  const op_options deadline = within(opts.connect_timeout());
  std::shared_ptr<link> l;
  if (to.domain() == AF_UNIX)
    l = std::make_shared<link>(co_await unix_stream::connect(to, deadline));
  else
    l = std::make_shared<link>(co_await tcp_stream::connect(to, deadline));

  // The handshake, in one write.
  std::string out;
  std::vector<std::string> names;
  if (!opts.password().empty()) {
    if (opts.user().empty())
      resp::append_command(out, {"AUTH", opts.password()});
    else
      resp::append_command(out, {"AUTH", opts.user(), opts.password()});
    names.emplace_back("AUTH");
  }
  if (opts.db() > 0) {
    resp::append_command(out, {"SELECT", std::to_string(opts.db())});
    names.emplace_back("SELECT");
  }
  if (!opts.client_name().empty()) {
    resp::append_command(out, {"CLIENT", "SETNAME", opts.client_name()});
    names.emplace_back("CLIENT SETNAME");
  }
  if (!out.empty()) co_await l->sock.write_all(std::as_bytes(std::span(out)), deadline);
  std::exception_ptr refused;
  for (const std::string& name : names) {
    const resp::reply r = co_await read_reply(*l, deadline);
    if (r.is_error() && !refused) refused = error_for(r, name, where);
  }
  if (refused) std::rethrow_exception(refused);

  link_ = std::move(l);
  connected_ = true;
  writer_running_ = false;
  const std::uint64_t gen = ++generation_;
  loop::this_loop().spawn(read_loop(link_, gen));
  if (unwritten_ > 0) start_writer();
}

void connection::start_writer() {
  writer_running_ = true;
  loop::this_loop().spawn(write_loop(link_, generation_));
}

void connection::enqueue(const std::shared_ptr<pending>& p) {
  if (fatal || closed_) {
    p->error = fatal ? fatal
                     : std::make_exception_ptr(connection_error("redis " + where + ": the client was closed"));
    p->done.set();
    return;
  }
  fifo_.push_back(p);
  ++unwritten_;
  if (connected_) {
    if (!writer_running_) start_writer();
  } else if (!reconnecting_) {
    reconnecting_ = true;
    loop::this_loop().spawn(reconnect_loop());
  }
}

task<void> connection::write_loop(std::shared_ptr<link> l, std::uint64_t gen) {
  auto self = shared_from_this();
  try {
    // Let the rest of this loop turn queue its commands: they all go in one write.
    co_await sleep_for(std::chrono::nanoseconds{0});
    std::string batch;
    while (generation_ == gen && unwritten_ > 0) {
      const std::size_t first = fifo_.size() - unwritten_;
      std::shared_ptr<pending> single;
      batch.clear();
      if (unwritten_ == 1) {
        single = fifo_[first];  // no copy: the command's own bytes
      } else {
        std::size_t size = 0;  // one allocation: growing by doubling copied the batch ~twice
        for (std::size_t i = first; i < fifo_.size(); ++i) size += fifo_[i]->bytes.size();
        batch.reserve(size);
        for (std::size_t i = first; i < fifo_.size(); ++i) batch += fifo_[i]->bytes;
      }
      for (std::size_t i = first; i < fifo_.size(); ++i) fifo_[i]->written = true;
      stats.commands += unwritten_;
      ++stats.writes;
      unwritten_ = 0;
      const std::string& data = single ? single->bytes : batch;
      co_await l->sock.write_all(std::as_bytes(std::span(data)));
    }
  } catch (const std::exception& e) {
    lost(gen, e.what());
  }
  if (generation_ == gen) writer_running_ = false;
}

task<void> connection::read_loop(std::shared_ptr<link> l, std::uint64_t gen) {
  auto self = shared_from_this();
  std::string why;
  try {
    for (;;) {
      const std::span<char> room = l->parser.prepare(read_chunk);
      const int n = co_await l->sock.read_some(std::as_writable_bytes(room));
      if (generation_ != gen) co_return;
      if (n == 0) {
        why = "the server closed the connection";
        break;
      }
      l->parser.commit(static_cast<std::size_t>(n));
      while (auto r = l->parser.next()) {
        if (fifo_.empty() || !fifo_.front()->written) throw connection_error("a reply to no command");
        std::shared_ptr<pending> p = std::move(fifo_.front());
        fifo_.pop_front();
        p->result = std::move(*r);
        p->done.set();
      }
    }
  } catch (const std::exception& e) {
    why = e.what();
  }
  lost(gen, why);
}

void connection::lost(std::uint64_t gen, const std::string& why) {
  if (gen != generation_ || closed_) return;  // already handled, or closing
  ++generation_;
  connected_ = false;
  try {
    link_->sock.shutdown(SHUT_RDWR);  // ends the other task's operation on it
  } catch (const std::exception&) {
  }
  link_.reset();
  // Keep what may be sent again; fail what may have been applied.
  std::deque<std::shared_ptr<pending>> keep;
  for (auto& p : fifo_) {
    if (p->written && !p->idempotent) {
      p->error = std::make_exception_ptr(connection_error(
          "redis " + where + ": the connection was lost (" + why + ") with " + p->name +
          " in flight: it may or may not have been applied, and is not sent again"));
      p->done.set();
    } else {
      p->written = false;
      keep.push_back(std::move(p));
    }
  }
  fifo_ = std::move(keep);
  unwritten_ = fifo_.size();
  if (!reconnecting_) {
    reconnecting_ = true;
    loop::this_loop().spawn(reconnect_loop());
  }
}

task<void> connection::reconnect_loop() {
  auto self = shared_from_this();
  const auto give_up = steady_clock::now() + opts.reconnect_for();
  auto backoff = opts.backoff_min();
  std::string last;
  std::exception_ptr end;
  while (!closed_ && !connected_) {
    try {
      co_await open();
      ++stats.reconnects;
      break;
    } catch (const server_error&) {  // refused at the handshake: never retried
      fatal = std::current_exception();
      end = fatal;
    } catch (const operation_cancelled&) {
      end = std::current_exception();
    } catch (const std::exception& e) {
      last = e.what();
    }
    if (end) break;
    if (steady_clock::now() + backoff > give_up) {
      end = std::make_exception_ptr(connection_error("redis " + where + ": could not reconnect within " +
                                                     ms(opts.reconnect_for()) + ": " + last));
      break;
    }
    try {
      co_await sleep_for(backoff);
    } catch (const std::exception&) {
      end = std::current_exception();
      break;
    }
    backoff = std::min(backoff * 2, opts.backoff_max());
  }
  reconnecting_ = false;
  if (end) fail_all(end);
}

void connection::fail_all(const std::exception_ptr& e) {
  auto all = std::move(fifo_);
  fifo_.clear();
  unwritten_ = 0;
  for (auto& p : all) {
    p->error = e;
    p->done.set();
  }
}

void connection::close() noexcept {
  if (closed_) return;
  closed_ = true;
  ++generation_;
  connected_ = false;
  if (link_) {
    try {
      link_->sock.shutdown(SHUT_RDWR);
    } catch (const std::exception&) {
    }
    link_.reset();
  }
  try {
    fail_all(std::make_exception_ptr(connection_error("redis " + where + ": the client was closed")));
  } catch (...) {  // out of memory for the message: the waiters stay asleep, as before
  }
}

}  // namespace detail

client::client(std::shared_ptr<detail::connection> c) noexcept : conn_(std::move(c)) {}
client::client(client&&) noexcept = default;
client& client::operator=(client&& o) noexcept {
  if (this != &o) {
    close();
    conn_ = std::move(o.conn_);
  }
  return *this;
}
client::~client() { close(); }

void client::close() noexcept {
  if (conn_) conn_->close();
}

const std::string& client::address() const noexcept { return conn_->where; }
client_stats client::stats() const noexcept { return conn_->stats; }

namespace {

task<client> open_client(std::shared_ptr<detail::connection> c) {
  std::string failure;
  try {
    co_await c->open();
  } catch (const server_error&) {
    throw;
  } catch (const operation_cancelled&) {
    throw;
  } catch (const timed_out&) {
    failure = "no answer within " + ms(c->opts.connect_timeout());
  } catch (const std::exception& e) {
    failure = e.what();
  }
  if (!failure.empty()) throw connection_error("redis " + c->where + ": cannot connect: " + failure);
  co_return client::adopt(std::move(c));
}

}  // namespace

// Not a coroutine: the options are read before this returns, so a temporary the caller
// built inside a co_await expression is never kept (and GCC 12 copies such temporaries
// bitwise into a coroutine frame).
task<client> client::connect(const options& given) {
  options o = given;
  endpoint ep = parse_endpoint(o.address());
  if (o.user().empty()) o.user(ep.user);
  if (o.password().empty()) o.password(ep.password);
  if (o.db() < 0) o.db(ep.db);
  (void)address::parse(ep.address);  // std::invalid_argument for a bad host now, not later
  return open_client(std::make_shared<detail::connection>(std::move(o), std::move(ep)));
}

namespace {

task<void> wait_done(std::shared_ptr<detail::pending> p) { co_await p->done.wait(); }

task<resp::reply> run(std::shared_ptr<detail::connection> c, std::shared_ptr<detail::pending> p,
                      std::optional<steady_clock::time_point> deadline) {
  auto backoff = c->opts.backoff_min();
  const auto give_up = steady_clock::now() + c->opts.reconnect_for();
  for (;;) {
    c->enqueue(p);
    if (deadline) {
      auto r = co_await when_any(wait_done(p), sleep_until(*deadline));
      if (r.index() == 1) throw timed_out("redis " + c->where + ": no reply to " + p->name + " before its deadline");
    } else {
      co_await p->done.wait();
    }
    if (p->error) std::rethrow_exception(p->error);
    resp::reply r = std::move(*p->result);
    if (!r.is_error()) co_return r;
    const auto next_try = steady_clock::now() + backoff;
    if (code_of(r) != "LOADING" || next_try > give_up || (deadline && next_try > *deadline))
      std::rethrow_exception(error_for(r, p->name, c->where));
    // Loading its data: the command was not run. Again after a pause.
    p->result.reset();
    p->written = false;
    p->done.reset();
    co_await sleep_for(backoff);
    backoff = std::min(backoff * 2, c->opts.backoff_max());
  }
}

}  // namespace

task<resp::reply> client::command_argv(std::span<const std::string_view> argv, command_options o) {
  if (argv.empty()) throw std::invalid_argument("redis::client::command: no command");
  auto p = std::make_shared<detail::pending>();
  resp::append_command(p->bytes, argv);
  p->name = upper(argv[0]);
  p->idempotent = o.idempotent == idempotency::yes || (o.idempotent == idempotency::by_name && read_only(p->name, argv));
  return run(conn_, std::move(p), o.deadline);
}


}  // namespace corio::redis
