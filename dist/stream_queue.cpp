#include "stream_queue.hpp"

#include <algorithm>
#include <stdexcept>
#include <string_view>

#include "../ipc/queue.hpp"
#include "../runtime/timer.hpp"
#include "detail/lua_claim.hpp"
#include "detail/reply_check.hpp"
#include "detail/lua_script.hpp"
#include "manager.hpp"

namespace corio::dist::detail {

using std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view group = "corio";

// KEYS[1] the stream; ARGV group, consumer, lease in ms. Returns {1, id, value} (taken),
// {0, id} (nothing: wait for an entry after id), {2} (the group was missing: re-created).
constexpr std::string_view take_script_rest = R"lua(
if #c[2] > 0 then
  local e = c[2][1]
  return {1, e[1], e[2][2]}
end
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
if r then
  local e = r[1][2][1]
  return {1, e[1], e[2][2]}
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then return {0, last[1][1]} end
return {0, '0-0'}
)lua";

// The whole script: claim_lapsed_lua, then the rest.
const lua_script& take_script() {
  static const lua_script script(std::string(claim_lapsed_lua) + std::string(take_script_rest));
  return script;
}

// KEYS[1] the stream; ARGV group, id.
constexpr std::string_view ack_script = R"lua(
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
)lua";

// KEYS[1] the stream; ARGV maxsize, value. 1: added, 0: full.
constexpr std::string_view bounded_put_script = R"lua(
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('XADD', KEYS[1], '*', 'v', ARGV[2])
return 1
)lua";

// KEYS[1] the stream; ARGV group. An empty queue with its group.
constexpr std::string_view clear_script = R"lua(
redis.call('DEL', KEYS[1])
redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
return 1
)lua";

// KEYS[1] the stream; ARGV group. Entries not taken: all minus those in flight.
constexpr std::string_view size_script = R"lua(
local n = redis.call('XLEN', KEYS[1])
local ok, p = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1])
if ok then n = n - p[1] end
return n
)lua";

std::string_view as_chars(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

std::optional<steady_clock::time_point> deadline_of(const stream_queue::timeout_type& t) {
  if (!t) return std::nullopt;
  return steady_clock::now() + *t;
}

}  // namespace

stream_queue::stream_queue(std::shared_ptr<manager_core> m, std::string name, std::size_t maxsize,
                           std::chrono::milliseconds lease)
    : m_(std::move(m)),
      name_(std::move(name)),
      key_("{" + name_ + "}:queue"),
      maxsize_(maxsize),
      lease_ms_(std::to_string(std::max<std::int64_t>(lease.count(), 1))) {
  if (name_.empty() || name_.find_first_of("{}") != std::string::npos)
    throw std::invalid_argument("corio::dist::queue: bad name \"" + name_ + "\" (empty, or with '{' or '}')");
}

std::string stream_queue::who() const { return "corio::dist::queue \"" + name_ + "\""; }

void stream_queue::check_size(std::size_t bytes) const {
  if (bytes > max_value_bytes)
    throw std::length_error("corio::dist::queue \"" + name_ + "\" put: the value encodes to " + std::to_string(bytes) +
                            " bytes, above Redis' limit of 536870912 bytes for one value (proto-max-bulk-len)");
}

task<void> stream_queue::ensure_group() {
  if (group_ready_) co_return;
  redis::client* c = co_await m_->commands();
  try {
    co_await c->command(redis::command_options{.idempotent = redis::idempotency::yes}, "XGROUP", "CREATE", key_,
                        group, "0", "MKSTREAM");
  } catch (const redis::server_error& e) {
    if (e.code() != "BUSYGROUP") throw;  // it exists: what we wanted
  }
  group_ready_ = true;
}

task<void> stream_queue::put(std::span<const std::byte> value, bool block, timeout_type timeout) {
  check_size(value.size());
  co_await ensure_group();
  redis::client* c = co_await m_->commands();
  if (maxsize_ == 0) {
    co_await c->command("XADD", key_, "*", "v", as_chars(value));
    co_return;
  }
  const auto deadline = deadline_of(timeout);
  const std::string max = std::to_string(maxsize_);
  auto pause = 1ms;
  for (;;) {
    static const lua_script script{std::string(bounded_put_script)};
    const std::string_view args[] = {"1", key_, max, as_chars(value)};
    const resp::reply r = co_await script.run(*c, args);
    // Anything but 0 or 1 would read as "full" and be polled forever.
    if (!is_integer(r) || r.integer < 0 || r.integer > 1)
      unexpected(who(), "the bounded put script", describe(r) + ", not 1 (added) or 0 (full)");
    if (r.integer == 1) co_return;
    if (!block || (deadline && steady_clock::now() + pause > *deadline))
      throw queue_full("corio::dist::queue \"" + name_ + "\" put: the queue holds its maximum of " + max + " values");
    co_await sleep_for(pause);  // full: poll, backing off to 100 ms
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
}

task<stream_queue::taken> stream_queue::take_once() {
  co_await ensure_group();
  redis::client* c = co_await m_->commands();
  for (bool recreated = false;;) {
    const std::string_view args[] = {"1", key_, group, m_->consumer(), lease_ms_};
    resp::reply r = co_await take_script().run(*c, args);
    // {1, id, value} | {0, id} | {2}: anything else is not the script's answer.
    const auto& e = r.elements;
    const std::int64_t status = e.empty() || e[0].type != resp::reply::kind::integer ? -1 : e[0].integer;
    if (status < 0 || status > 2 || e.size() < (status == 1 ? 3u : status == 0 ? 2u : 1u))
      throw redis::unexpected_reply("corio::dist::queue \"" + name_ + "\": the take script answered " +
                                    std::to_string(e.size()) + " elements, not {1, id, value}, {0, id} or {2}");
    if (status != 2 && (!is_bulk(e[1]) || !stream_id::parse(e[1].str)))
      unexpected(who(), "the take script", "the entry id " + describe(e[1]) + ", not ms-seq");
    if (status == 1 && !is_bulk(e[2])) unexpected(who(), "the take script", "the value " + describe(e[2]) + ", not bytes");
    if (status == 2) {
      // The script re-created the group: the next run finds it. A second {2} in a row is
      // no Redis, and would be a loop.
      if (std::exchange(recreated, true))
        unexpected(who(), "the take script", "{2} (group re-created) twice in a row");
      m_->warn("corio: the consumer group of queue \"" + name_ + "\" on redis " + m_->where() +
               " was missing (Redis restarted without persistence?): re-created; values put before the restart are lost");
      continue;
    }
    if (status == 0) co_return taken{std::nullopt, e[1].str};
    std::string id = e[1].str;
    std::string value = std::move(r.elements[2].str);
    static const lua_script ack{std::string(ack_script)};
    const std::string_view ack_args[] = {"1", key_, group, id};
    co_await ack.run(*c, ack_args, {.idempotent = redis::idempotency::yes});
    co_return taken{std::move(value), {}};
  }
}

task<std::optional<std::string>> stream_queue::get(bool block, timeout_type timeout) {
  const auto deadline = deadline_of(timeout);
  for (;;) {
    taken t = co_await take_once();
    if (t.value) co_return std::move(t.value);
    const auto now = steady_clock::now();
    if (!block || (deadline && now >= *deadline)) co_return std::nullopt;
    // Wait for an entry newer than the newest one there, a second at a time at most.
    auto wait = std::chrono::milliseconds(1000);
    if (deadline) wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(*deadline - now));
    redis::client* b = co_await m_->blocking();
    const resp::reply r = co_await b->command(
        redis::command_options{.deadline = now + wait + 5s, .idempotent = redis::idempotency::yes}, "XREAD", "COUNT",
        "1", "BLOCK", std::to_string(std::max<std::int64_t>(wait.count(), 1)), "STREAMS", key_, t.wait_after);
    // Entries older than asked for, answered at once and forever, would be a busy loop.
    if (!r.is_nil()) {
      const bool shaped = is_array(r, 1) && is_array(r.elements[0], 2) && !r.elements[0].elements[1].elements.empty();
      const resp::reply* first = shaped ? &r.elements[0].elements[1].elements[0] : nullptr;
      const auto id = first && is_array(*first, 2) ? stream_id::parse(first->elements[0].str) : std::nullopt;
      if (!id || *id <= *stream_id::parse(t.wait_after))  // wait_after was checked in take_once
        unexpected(who(), "XREAD", describe(r) + ", not nil or [[stream, [[an id after " + t.wait_after + ", ...]]]]");
    }
  }
}

task<void> stream_queue::clear() {
  redis::client* c = co_await m_->commands();
  static const lua_script script{std::string(clear_script)};
  const std::string_view args[] = {"1", key_, group};
  co_await script.run(*c, args, {.idempotent = redis::idempotency::yes});
  group_ready_ = true;
}

task<std::size_t> stream_queue::size() {
  redis::client* c = co_await m_->commands();
  static const lua_script script{std::string(size_script)};
  const std::string_view args[] = {"1", key_, group};
  const resp::reply r = co_await script.run(*c, args);
  if (!is_integer(r)) unexpected(who(), "the size script", describe(r) + ", not a count");
  co_return static_cast<std::size_t>(std::max<std::int64_t>(r.integer, 0));
}

}  // namespace corio::dist::detail
