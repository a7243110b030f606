#include "task_pool.hpp"

#include <utility>

#include "../runtime/loop.hpp"
#include "detail/reply_check.hpp"
#include "resp.hpp"

namespace corio::dist::detail {

namespace {

std::string_view as_chars(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// The entries of XREAD's answer for one stream, checked whole before any is used:
// nil (the BLOCK ran out) or [[stream, [[id, [field, value, ...]], ...]]], ids after `last`
// and rising, every field a bulk string, in pairs, no more entries than `count` asked for.
// `last` is left at the last id. So a server that answers the same entries again (or
// older ones) makes an error, never a loop that reads them forever.
const std::vector<resp::reply>* results_read(const resp::reply& r, const std::string& who, const std::string& stream,
                                             stream_id& last, std::size_t count) {
  if (r.is_nil()) return nullptr;
  if (!is_array(r, 1) || !is_array(r.elements[0], 2) || r.elements[0].elements[0].str != stream ||
      !is_array(r.elements[0].elements[1]))
    unexpected(who, "XREAD", describe(r) + ", not [[its results stream, [entries]]]");
  const std::vector<resp::reply>& entries = r.elements[0].elements[1].elements;
  if (entries.size() > count)
    unexpected(who, "XREAD", std::to_string(entries.size()) + " entries to COUNT " + std::to_string(count));
  for (const resp::reply& e : entries) {
    if (!is_array(e, 2) || !is_bulk(e.elements[0]) || !is_array(e.elements[1]) ||
        e.elements[1].elements.size() % 2 != 0)
      unexpected(who, "XREAD", "the entry " + describe(e) + ", not [id, [field, value, ...]]");
    const std::optional<stream_id> id = stream_id::parse(e.elements[0].str);
    if (!id) unexpected(who, "XREAD", "the entry id " + describe(e.elements[0]) + ", not ms-seq");
    if (*id <= last)
      unexpected(who, "XREAD", "the entry id " + id->text() + ", not after " + last.text() + " (the last one read)");
    for (const resp::reply& f : e.elements[1].elements)
      if (!is_bulk(f)) unexpected(who, "XREAD", "the field " + describe(f) + " in entry " + id->text());
    last = *id;
  }
  return &entries;
}

}  // namespace

task<void> wait_result(std::shared_ptr<remote_result> r) { co_await r->done.wait(); }

std::span<const std::byte> result_bytes(const remote_result& r) {
  if (r.failure) std::rethrow_exception(r.failure);
  const auto bytes = std::as_bytes(std::span(r.payload.data(), r.payload.size()));
  if (r.status == "ok") return bytes;
  if (r.status == "dead") throw dead_letter("corio::dist::task_pool: " + r.payload);
  auto [type, message] = corio::decode<std::pair<std::string, std::string>>(bytes);
  throw remote_error(std::move(type), std::move(message));
}

pool_submitter::pool_submitter(std::shared_ptr<manager_core> m, const std::string& pool)
    : m_(std::move(m)),
      keys_(pool),
      results_(keys_.results(m_->consumer())),
      who_("corio::dist::task_pool \"" + pool + "\"") {}

pool_submitter::~pool_submitter() = default;

task<std::shared_ptr<remote_result>> pool_submitter::submit(std::string fn, std::vector<std::byte> args) {
  redis::client* c = co_await m_->commands();
  if (!collecting_) {
    collecting_ = true;
    collector_loop_ = &loop::this_loop();
    collector_done_.reset();
    collector_loop_->spawn(collect(shared_from_this()));
  }
  std::string tid = m_->next_task_id();
  auto r = std::make_shared<remote_result>();
  waiting_.emplace(tid, r);
  try {
    co_await c->command("XADD", keys_.tasks, "*", "tid", tid, "fn", fn, "args", as_chars(args), "reply", results_);
  } catch (...) {
    waiting_.erase(tid);
    throw;
  }
  co_return r;
}

void pool_submitter::fail_waiting(std::exception_ptr e) {
  auto all = std::move(waiting_);
  waiting_.clear();
  for (auto& [tid, r] : all) {
    r->failure = e;
    r->done.set();
  }
}

// Reads this submitter's results stream, hands each result to its future, deletes what
// it read. Its own connection: a blocking read holds a connection.
task<void> pool_submitter::collect(std::shared_ptr<pool_submitter> self) {
  using namespace std::chrono_literals;
  std::optional<redis::client>& c = self->collector_client_;
  struct done_guard {
    pool_submitter& p;
    ~done_guard() {
      p.collecting_ = false;
      p.collector_client_.reset();
      p.collector_done_.set();
    }
  } guard{*self};
  constexpr std::size_t count = 4096;
  stream_id last;  // 0-0: from the start (the stream holds only what was not read yet)
  bool pause = false;
  while (!self->stopping_) {
    if (std::exchange(pause, false)) co_await sleep_for(200ms);  // after a failure: no busy retry
    try {
      if (!c) c.emplace(co_await redis::client::connect(self->m_->options()));
      const auto within = redis::command_options{.deadline = std::chrono::steady_clock::now() + 6s,
                                                 .idempotent = redis::idempotency::yes};
      self->reading_ = true;
      const resp::reply r = co_await c->command(within, "XREAD", "COUNT", std::to_string(count), "BLOCK", "1000",
                                                "STREAMS", self->results_, last.text());
      self->reading_ = false;
      const std::vector<resp::reply>* entries = results_read(r, self->who_, self->results_, last, count);
      if (entries == nullptr || entries->empty()) continue;
      for (const resp::reply& e : *entries) self->deliver(e.elements[1]);
      // Only this collector reads the stream, in order: everything up to `last` is done.
      // (A stop waits for this: it closes the connection only under the blocking read.)
      // The largest id has no next: MINID of itself leaves that one entry.
      co_await c->command(within, "XTRIM", self->results_, "MINID", last.next().value_or(last).text());
    } catch (const redis::unexpected_reply&) {
      // Not Redis' answer: reading again would read the same (or loop). The futures fail
      // with it; the next submit starts a collector afresh, on a new connection.
      self->fail_waiting(std::current_exception());
      co_return;
    } catch (const redis::auth_error&) {
      self->fail_waiting(std::current_exception());
      co_return;
    } catch (const operation_cancelled&) {
      self->fail_waiting(std::current_exception());
      co_return;
    } catch (const std::exception& e) {
      self->reading_ = false;
      if (self->stopping_) co_return;
      if (const auto* refused = dynamic_cast<const redis::server_error*>(&e); refused && refused->code() == "WRONGTYPE") {
        // Someone wrote another type over the results stream (a foreign SET): what it held
        // went with it, and workers drop the results sent there (counted undeliverable), so
        // no future waiting would ever end. They fail; the next submit reads afresh.
        self->fail_waiting(std::make_exception_ptr(redis::server_error(
            self->who_ + ": its results stream \"" + self->results_ +
                "\" holds another type now (a foreign write?): the results sent there are dropped (" + e.what() + ")",
            "WRONGTYPE")));
        co_return;
      }
      c.reset();  // reconnect after a pause; the results wait in their stream
      pause = true;
    }
  }
}

// An entry's fields: one or more results, TID and "STATUS N PAYLOAD" (pool_protocol.hpp).
void pool_submitter::deliver(const resp::reply& fields) {
  const auto& f = fields.elements;
  for (std::size_t i = 0; i + 1 < f.size(); i += 2) {
    const auto it = waiting_.find(f[i].str);
    if (it == waiting_.end()) continue;  // a future nobody holds any more
    const std::shared_ptr<remote_result> res = std::move(it->second);
    waiting_.erase(it);
    const parsed_result p = pool_parse_result(f[i + 1].str);
    res->status = p.status;
    res->payload = p.payload;
    res->deliveries = p.deliveries;
    res->done.set();
  }
}

void pool_submitter::begin_stop() noexcept {
  stopping_ = true;
  if (collector_client_ && reading_) collector_client_->close();  // its read fails at once
}

task<void> pool_submitter::close(std::shared_ptr<pool_submitter> self) {
  self->begin_stop();
  if (self->collecting_) co_await self->collector_done_.wait();
}

void pool_submitter::stop_and_wait() {
  begin_stop();
  if (collecting_ && loop::current() == nullptr && m_->owns(collector_loop_)) {
    try {
      m_->run_blocking("task_pool::~task_pool", close(shared_from_this()));
    } catch (...) {  // a destructor: the collector still ends at the loop's next turn
    }
  }
}

task<std::map<std::string, std::int64_t>> pool_submitter::stats() {
  redis::client* c = co_await m_->commands();
  const resp::reply r = co_await c->command("HGETALL", keys_.stats);
  std::map<std::string, std::int64_t> out{{"written", 0}, {"duplicates", 0}, {"undeliverable", 0}, {"dead", 0}};
  if (!is_array(r)) unexpected(who_, "HGETALL", describe(r) + ", not [field, value, ...]");
  for (std::size_t i = 0; i < r.elements.size(); i += 2) {
    std::int64_t n = 0;
    if (i + 1 == r.elements.size() || !resp::parse_int64(r.elements[i + 1].str, n))
      unexpected(who_, "HGETALL", "a counter that is not a field and an int64 (" + describe(r.elements[i]) + ")");
    out[r.elements[i].str] = n;
  }
  co_return out;
}

}  // namespace corio::dist::detail
