#include "detail/redis_connection.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "../runtime/address.hpp"
#include "../runtime/errors.hpp"
#include "../runtime/loop.hpp"
#include "../runtime/resolve.hpp"
#include "../runtime/timer.hpp"
#include "resp.hpp"

namespace corio::redis::detail {

using std::chrono::steady_clock;

namespace {

constexpr std::size_t read_chunk = 64 * 1024;

}  // namespace

std::shared_ptr<pending> make_pending(std::span<const std::string_view> argv, std::string name, bool idempotent) {
  auto p = std::make_shared<pending>();
  resp::append_command(p->bytes, argv);
  p->name = std::move(name);
  p->idempotent = idempotent;
  return p;
}

std::string upper_name(std::string_view s) {
  std::string out(s.substr(0, 32));
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string error_code(const resp::reply& r) { return r.str.substr(0, r.str.find(' ')); }

std::exception_ptr error_for(const resp::reply& r, const std::string& name, const std::string& where) {
  std::string code = error_code(r);
  const std::string what = "redis " + where + ": " + name + ": " + r.str;
  if (code == "WRONGPASS" || code == "NOAUTH" || code == "NOPERM")
    return std::make_exception_ptr(auth_error(what, std::move(code)));
  return std::make_exception_ptr(server_error(what, std::move(code)));
}

std::string ms_text(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

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
  const op_options deadline = within(opts.connect_timeout());
  std::shared_ptr<link> l;
  if (is_unix_address(where)) {
    l = std::make_shared<link>(co_await unix_stream::connect(address::parse(where), deadline));
  } else {
    // A name is looked up again at every (re)connect: a moved server is followed. A
    // numeric host connects at once, without a lookup.
    const host_port hp = split_host_port(where);
    l = std::make_shared<link>(co_await tcp_stream::connect(hp.host, hp.port, deadline));
  }

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
  if (probe_cluster) resp::append_command(out, {"CLUSTER", "SLOTS"});
  if (!out.empty()) co_await l->sock.write_all(std::as_bytes(std::span(out)), deadline);
  std::exception_ptr refused;
  for (const std::string& name : names) {
    const resp::reply r = co_await read_reply(*l, deadline);
    if (r.is_error() && !refused) refused = error_for(r, name, where);
  }
  if (probe_cluster) probe = co_await read_reply(*l, deadline);  // an error is an answer too
  if (refused) std::rethrow_exception(refused);
  probe_cluster = false;

  link_ = std::move(l);
  connected_ = true;
  ever_connected_ = true;
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
  const bool again = ever_connected_;  // else a node of a cluster, opened at first use
  while (!closed_ && !connected_) {
    try {
      co_await open();
      if (again) ++stats.reconnects;
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
      end = std::make_exception_ptr(connection_error("redis " + where + ": could not " +
                                                     (again ? "reconnect" : "connect") + " within " +
                                                     ms_text(opts.reconnect_for()) + ": " + last));
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


}  // namespace corio::redis::detail
