#include "server.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

#include "../coro/stop.hpp"
#include "errors.hpp"
#include "timer.hpp"

namespace corio {
namespace detail {

// One shard's part of a server. Created by serve() on its shard, then touched only on
// shard `index` (its stop sources may be requested from anywhere, but are only requested
// there) until finish_shard ended; destroyed by serve() after that.
struct server_shard {
  explicit server_shard(unsigned i) : index(i) {}

  unsigned index;
  std::optional<tcp_listener> listener;
  std::stop_source drain;    // stop accepting; close idle connections
  std::stop_source hard;     // cancel the handlers still running (after the grace period)
  std::stop_source drained;  // requested when `live` reaches 0
  std::stop_token drain_token = drain.get_token();
  std::stop_token hard_token = hard.get_token();
  std::stop_token drained_token = drained.get_token();
  // The accept loop and the sweeper (1 each while they run) plus the connection
  // coroutines. Those two end only after drain, so reaching 0 means the shard is
  // finished for good.
  std::size_t live = 0;
  // Every connection of this shard (intrusive, through connection::prev_/next_).
  connection* connections = nullptr;

  void release() noexcept {
    if (--live == 0) drained.request_stop();
  }
  static void on_exit(void* self, std::exception_ptr) noexcept { static_cast<server_shard*>(self)->release(); }
};

}  // namespace detail

namespace {
// A sleep nobody expects to end: it waits for a stop token.
constexpr auto forever = std::chrono::hours(24 * 365 * 10);
// Options carrying only a stop token.
op_options token_only(const std::stop_token& t) { return {.token = &t, .deadline = std::nullopt}; }
}  // namespace

// --- connection -------------------------------------------------------------------------

connection::connection(tcp_stream& stream, std::byte* buffers, const server_options& options,
                       detail::server_shard& shard) noexcept
    : stream_(stream),
      reader_(stream, std::span<std::byte>(buffers, options.read_buffer_size)),
      writer_(stream, std::span<std::byte>(buffers + options.read_buffer_size, options.write_buffer_size)),
      shard_(shard),
      options_(options) {
  reader_.set_hooks(&hooks, this);
  next_ = shard_.connections;
  if (next_ != nullptr) next_->prev_ = this;
  shard_.connections = this;
}

connection::~connection() {
  if (prev_ != nullptr)
    prev_->next_ = next_;
  else
    shard_.connections = next_;
  if (next_ != nullptr) next_->prev_ = prev_;
}

const buffered_reader::receive_hooks connection::hooks = {&connection::before_receive, &connection::after_receive};

bool connection::draining() const noexcept { return shard_.drain_token.stop_requested(); }

unsigned connection::shard() const noexcept { return shard_.index; }

op_options connection::before_receive(void* self, const buffered_reader& reader, bool buffer_empty) {
  auto* c = static_cast<connection*>(self);
  const auto& o = c->options_;
  c->idle_receive_ = buffer_empty;
  c->deadline_ = std::chrono::steady_clock::time_point::max();
  if (buffer_empty) {
    // Waiting for a new message. During shutdown that is where the connection ends: the
    // drain token is already stopped, so the receive fails before it is submitted.
    if (c->shard_.drain_token.stop_requested()) return token_only(c->shard_.drain_token);
    if (o.idle_timeout.count() > 0) c->deadline_ = std::chrono::steady_clock::now() + o.idle_timeout;
  } else if (o.read_timeout.count() > 0) {
    if (reader.consumed_total() != c->partial_mark_) {  // a new partial message
      c->partial_mark_ = reader.consumed_total();
      c->partial_since_ = std::chrono::steady_clock::now();
    }
    c->deadline_ = c->partial_since_ + o.read_timeout;
  }
  // The handler's own stop token (the shard's hard stop) covers the receive.
  return {};
}

void connection::after_receive(void* self) noexcept {
  auto* c = static_cast<connection*>(self);
  c->idle_receive_ = false;
  c->deadline_ = std::chrono::steady_clock::time_point::max();
}

// --- server -----------------------------------------------------------------------------

server::server(const address& at, handler_type handler, server_options options)
    : handler_(std::move(handler)), options_(options) {
  if (!handler_) throw std::invalid_argument("corio::server: the handler is empty");
  if (options_.read_buffer_size == 0 || options_.write_buffer_size == 0)
    throw std::invalid_argument("corio::server: read_buffer_size and write_buffer_size must be > 0");
  if (options_.max_connections == 0) throw std::invalid_argument("corio::server: max_connections must be > 0");
  first_.emplace(tcp_listener::bind(at, {.reuse_port = true, .reuse_address = true, .backlog = options_.backlog}));
  local_ = first_->local_address();
}

server::~server() = default;

server_stats server::stats() const noexcept {
  return {.accepted = accepted_.load(std::memory_order_relaxed),
          .rejected = rejected_.load(std::memory_order_relaxed),
          .active = active_.load(std::memory_order_relaxed),
          .timed_out = timed_out_.load(std::memory_order_relaxed),
          .failed = failed_.load(std::memory_order_relaxed)};
}

int server::run(runtime_options options) {
  signal_set signals{SIGINT, SIGTERM};  // before the runtime's threads: they inherit the mask
  runtime rt(options);
  return rt.run(serve(&signals));
}

task<int> server::serve(signal_set* signals) {
  const unsigned n = corio::shard_count();  // std::logic_error outside a runtime
  if (served_) throw std::logic_error("corio::server::serve: called twice (a server serves once)");
  served_ = true;
  for (unsigned k = 0; k < n; ++k) shards_.push_back(std::make_unique<detail::server_shard>(k));

  unsigned started = 0;
  std::exception_ptr error;
  try {
    for (; started < n; ++started) co_await submit_to(started, [this, started] { start_shard(started); });
  } catch (...) {
    error = std::current_exception();  // a shard could not bind: stop the others
  }

  int sig = 0;
  if (!error) {
    // Once per serve: which backend the shards run on (docs/backends.md), so a server in a
    // container that refuses io_uring says it runs on epoll.
    std::fprintf(stderr, "corio::server: serving %s on %u shard%s, %s backend\n", local_.to_string().c_str(), n,
                 n == 1 ? "" : "s", std::string(to_string(loop::this_loop().backend())).c_str());
    const std::stop_token outer = co_await this_coro::stop_token;
    auto forward = [this]() noexcept { stop(); };
    const std::stop_callback<decltype(forward)> on_outer_stop(outer, forward);
    const std::stop_token stopped = stop_.get_token();
    try {
      if (signals != nullptr)
        sig = co_await signals->wait(token_only(stopped));
      else
        co_await sleep_for(forever, token_only(stopped));
    } catch (const operation_cancelled&) {
      // stop(), or our own token: shut down below.
    }
  }

  // All shards stop accepting and close their idle connections at once; then each gets
  // the rest of the grace period (an absolute deadline, so waiting for the shards one
  // after the other costs nothing).
  const auto deadline = std::chrono::steady_clock::now() + options_.shutdown_grace;
  for (unsigned k = 0; k < started; ++k) {
    detail::server_shard* sh = shards_[k].get();
    co_await submit_to(k, [sh] { sh->drain.request_stop(); });
  }
  for (unsigned k = 0; k < started; ++k) {
    detail::server_shard* sh = shards_[k].get();
    co_await submit_to(k, [sh, deadline] { return finish_shard(*sh, deadline); });
  }
  shards_.clear();
  if (error) std::rethrow_exception(error);
  co_return sig;
}

void server::start_shard(unsigned index) {
  detail::server_shard& sh = *shards_[index];
  if (index == 0 && first_) {
    sh.listener.emplace(std::move(*first_));
    first_.reset();
  } else {
    sh.listener.emplace(tcp_listener::bind(local_, {.reuse_port = true, .reuse_address = true, .backlog = options_.backlog}));
  }
  sh.live = 2;
  start_detached(accept_loop(sh), &detail::server_shard::on_exit, &sh, sh.hard_token);
  start_detached(sweep_loop(sh), &detail::server_shard::on_exit, &sh, sh.hard_token);
}

task<void> server::accept_loop(detail::server_shard& sh) {
  try {
    auto incoming = sh.listener->incoming();
    for (;;) {
      bool pause = false;
      try {
        tcp_stream s = co_await incoming.next(token_only(sh.drain_token));
        if (active_.fetch_add(1, std::memory_order_relaxed) >= options_.max_connections) {
          active_.fetch_sub(1, std::memory_order_relaxed);
          rejected_.fetch_add(1, std::memory_order_relaxed);
          continue;  // `s` closes here: the client sees the connection closed at once
        }
        accepted_.fetch_add(1, std::memory_order_relaxed);
        ++sh.live;
        start_detached(run_connection(sh, std::move(s)), &detail::server_shard::on_exit, &sh, sh.hard_token);
      } catch (const operation_cancelled&) {
        break;  // drain: stop accepting
      } catch (const std::system_error&) {
        // EMFILE, ENFILE, ENOBUFS...: the connection stays in the backlog; retry soon
        // instead of spinning on the same error.
        pause = true;
      }
      if (pause) {
        try {
          co_await sleep_for(std::chrono::milliseconds(20), token_only(sh.drain_token));
        } catch (const operation_cancelled&) {
          break;
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "corio::server: shard %u stopped accepting: %s\n", sh.index, e.what());
  }
  sh.listener.reset();  // clients still in this listener's backlog are reset by the kernel
}

task<void> server::sweep_loop(detail::server_shard& sh) {
  using std::chrono::milliseconds;
  milliseconds shortest = milliseconds::max();
  for (milliseconds t : {options_.idle_timeout, options_.read_timeout})
    if (t.count() > 0) shortest = std::min(shortest, t);
  const milliseconds tick = std::clamp(shortest / 4, milliseconds(5), milliseconds(250));
  for (;;) {
    try {
      if (shortest == milliseconds::max())
        co_await sleep_for(forever, token_only(sh.drain_token));
      else
        co_await sleep_for(tick, token_only(sh.drain_token));
    } catch (const operation_cancelled&) {
      break;  // drain
    }
    const auto now = std::chrono::steady_clock::now();
    for (connection* c = sh.connections; c != nullptr; c = c->next_) {
      if (c->deadline_ <= now && !c->expired_) {
        // Ends the pending receive as end of stream; the handler returns, the server
        // closes. shutdown(2) never blocks.
        c->expired_ = true;
        ::shutdown(c->stream_.fd(), SHUT_RD);
      }
    }
  }
  // Drain: connections waiting for a new message end now; the others when they next wait.
  for (connection* c = sh.connections; c != nullptr; c = c->next_)
    if (c->idle_receive_) ::shutdown(c->stream_.fd(), SHUT_RD);
}

task<void> server::run_connection(detail::server_shard& sh, tcp_stream stream) {
  std::unique_ptr<std::byte[]> buffers;
  try {
    // The connection's one allocation besides its frames: both buffers.
    buffers.reset(new std::byte[options_.read_buffer_size + options_.write_buffer_size]);
  } catch (const std::bad_alloc&) {
    failed_.fetch_add(1, std::memory_order_relaxed);
    active_.fetch_sub(1, std::memory_order_relaxed);
    co_return;
  }
  connection conn(stream, buffers.get(), options_, sh);
  if (options_.provided_buffers) (void)conn.reader().use_provided_buffers();
  bool timed_out_here = false;
  try {
    co_await handler_(conn);
  } catch (const timed_out&) {
    timed_out_here = true;  // a deadline the handler set itself
  } catch (const operation_cancelled&) {
    // Shutdown closed an idle connection or cancelled a handler after the grace period.
  } catch (const end_of_stream&) {
    // The client went away mid-message.
  } catch (const buffer_limit_exceeded&) {
    // The client sent a message larger than the handler accepts.
  } catch (const std::system_error&) {
    // The client reset the connection, or a send hit a closed socket.
  } catch (const std::exception& e) {
    failed_.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "corio::server: a connection handler failed: %s\n", e.what());
  } catch (...) {
    failed_.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "corio::server: a connection handler failed with an exception of unknown type\n");
  }
  if (timed_out_here || conn.expired_) timed_out_.fetch_add(1, std::memory_order_relaxed);
  active_.fetch_sub(1, std::memory_order_relaxed);
}  // `stream` closes here

task<void> server::finish_shard(detail::server_shard& sh, std::chrono::steady_clock::time_point deadline) {
  if (sh.live > 0) {
    try {
      co_await sleep_until(deadline, token_only(sh.drained_token));
    } catch (const operation_cancelled&) {
      // Everything ended before the deadline.
    }
  }
  if (sh.live > 0) {
    sh.hard.request_stop();
    try {
      co_await sleep_for(forever, token_only(sh.drained_token));
    } catch (const operation_cancelled&) {
    }
  }
}

}  // namespace corio
