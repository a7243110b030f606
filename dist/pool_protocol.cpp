#include "detail/pool_protocol.hpp"

#include "detail/lua_claim.hpp"

#include <string>

namespace corio::dist::detail {

namespace {

using redis::command_options;
using redis::idempotency;

// KEYS tasks, dead, stats; ARGV group, consumer, lease ms, max deliveries, done prefix,
// result ttl ms, count. {1, then per task: entry, tid, fn, args, reply, deliveries} (one
// task taken over, or up to `count` new ones) | {0} | {2} (group re-created) | {3} (a
// task moved to the dead letters).
constexpr std::string_view fetch_script_rest = R"lua(
local function fields(e)
  local t = {}
  for i = 1, #e[2], 2 do t[e[2][i]] = e[2][i + 1] end
  return t
end
local e = c[2][1]
local n = 1
if e then
  n = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)[1][4]
  if n > tonumber(ARGV[4]) then
    local f = fields(e)
    local why = 'the task was delivered ' .. n .. ' times and its worker died each time (moved to ' .. KEYS[2] .. ')'
    redis.call('XADD', KEYS[2], '*', 'tid', f.tid, 'fn', f.fn, 'args', f.args, 'reply', f.reply, 'deliveries', n, 'error', why)
    if redis.call('SET', ARGV[5] .. f.tid, '1', 'NX', 'PX', ARGV[6]) then
      redis.call('XADD', f.reply, '*', 'tid', f.tid, 'status', 'dead', 'v', why, 'n', n)
    end
    redis.call('XACK', KEYS[1], ARGV[1], e[1])
    redis.call('XDEL', KEYS[1], e[1])
    redis.call('HINCRBY', KEYS[3], 'dead', 1)
    return {3}
  end
  local f = fields(e)
  return {1, e[1], f.tid, f.fn, f.args, f.reply, n}
end
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[7], 'STREAMS', KEYS[1], '>')
if not r then return {0} end
local out = {1}
for _, e in ipairs(r[1][2]) do
  local f = fields(e)
  for _, v in ipairs({e[1], f.tid, f.fn, f.args, f.reply, 1}) do out[#out + 1] = v end
end
return out
)lua";

// The whole script: claim_lapsed_lua, then the rest.
const std::string& fetch_script() {
  static const std::string script = std::string(claim_lapsed_lua) + std::string(fetch_script_rest);
  return script;
}

// KEYS tasks; ARGV group, consumer, entries... The number of entries renewed; the others
// are not ours any more.
constexpr std::string_view renew_script = R"lua(
local renewed = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    renewed = renewed + 1
  end
end
return renewed
)lua";

// KEYS tasks, stats; ARGV group, ttl ms, then per task: entry, reply stream, done marker,
// tid, status, payload, deliveries. Per task 1 (written) or 0 (a result was there).
constexpr std::string_view complete_script = R"lua(
local out, ids = {}, {}
local written, duplicates = 0, 0
for i = 3, #ARGV, 7 do
  if redis.call('SET', ARGV[i + 2], '1', 'NX', 'PX', ARGV[2]) then
    redis.call('XADD', ARGV[i + 1], '*', 'tid', ARGV[i + 3], 'status', ARGV[i + 4], 'v', ARGV[i + 5], 'n', ARGV[i + 6])
    written = written + 1
    out[#out + 1] = 1
  else
    duplicates = duplicates + 1
    out[#out + 1] = 0
  end
  ids[#ids + 1] = ARGV[i]
end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
redis.call('XDEL', KEYS[1], unpack(ids))
if written > 0 then redis.call('HINCRBY', KEYS[2], 'written', written) end
if duplicates > 0 then redis.call('HINCRBY', KEYS[2], 'duplicates', duplicates) end
return out
)lua";

std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count() > 0 ? d.count() : 1); }

}  // namespace

pool_keys::pool_keys(const std::string& pool)
    : tasks("{" + pool + "}:tasks"), dead("{" + pool + "}:dead"), stats("{" + pool + "}:stats"),
      done_prefix("{" + pool + "}:done:") {}

std::string pool_keys::results(const std::string& submitter) const {
  return tasks.substr(0, tasks.size() - 5) + "results:" + submitter;
}

task<fetched> pool_fetch(redis::client& c, const pool_keys& k, const std::string& consumer, std::chrono::milliseconds lease,
                         unsigned max_deliveries, std::chrono::milliseconds result_ttl, unsigned count) {
  resp::reply r = co_await c.command("EVAL", fetch_script(), "3", k.tasks, k.dead, k.stats, pool_group, consumer, ms(lease),
                                     std::to_string(max_deliveries), k.done_prefix, ms(result_ttl), std::to_string(count));
  fetched out;
  const std::int64_t status = r.elements.empty() ? 0 : r.elements[0].integer;
  if (status == 2) out.what = fetched::kind::group_recreated;
  if (status == 3) out.what = fetched::kind::dead_lettered;
  if (status == 1) {
    out.what = fetched::kind::tasks;
    auto& e = r.elements;
    for (std::size_t i = 1; i + 6 <= e.size(); i += 6)
      out.tasks.push_back({std::move(e[i].str), std::move(e[i + 1].str), std::move(e[i + 2].str), std::move(e[i + 3].str),
                           std::move(e[i + 4].str), e[i + 5].integer});
  }
  co_return out;
}

std::vector<pool_task> pool_tasks_from_read(const resp::reply& r) {
  // [[stream, [[id, [field, value, ...]], ...]]]
  std::vector<pool_task> out;
  if (r.elements.empty() || r.elements[0].elements.size() < 2) return out;
  for (const resp::reply& e : r.elements[0].elements[1].elements) {
    if (e.elements.size() < 2) continue;
    pool_task& t = out.emplace_back();
    t.entry = e.elements[0].str;
    const auto& f = e.elements[1].elements;
    for (std::size_t i = 0; i + 1 < f.size(); i += 2) {
      const std::string& name = f[i].str;
      std::string* field =
          name == "tid" ? &t.tid : name == "fn" ? &t.fn : name == "args" ? &t.args : name == "reply" ? &t.reply : nullptr;
      if (field) *field = f[i + 1].str;
    }
  }
  return out;
}

task<std::size_t> pool_renew(redis::client& c, const pool_keys& k, const std::string& consumer,
                             const std::vector<std::string>& entries) {
  std::vector<std::string_view> argv = {"EVAL", renew_script, "1", k.tasks, pool_group, consumer};
  argv.insert(argv.end(), entries.begin(), entries.end());
  const resp::reply r = co_await c.command_argv(argv, {.idempotent = idempotency::yes});
  co_return static_cast<std::size_t>(r.integer);
}

task<std::vector<bool>> pool_complete(redis::client& c, const pool_keys& k, const std::vector<pool_result>& results,
                                      std::chrono::milliseconds result_ttl) {
  const std::string ttl = ms(result_ttl);
  std::vector<std::string> counts, markers;
  counts.reserve(results.size());
  markers.reserve(results.size());
  std::vector<std::string_view> argv = {"EVAL", complete_script, "2", k.tasks, k.stats, pool_group, ttl};
  for (const pool_result& r : results) {
    counts.push_back(std::to_string(r.task.deliveries));
    markers.push_back(k.done_prefix + r.task.tid);
    argv.insert(argv.end(), {r.task.entry, r.task.reply, markers.back(), r.task.tid, r.status, r.payload, counts.back()});
  }
  const resp::reply r = co_await c.command_argv(argv, {.idempotent = idempotency::yes});
  std::vector<bool> written;
  for (const resp::reply& e : r.elements) written.push_back(e.integer == 1);
  if (written.size() != results.size()) throw redis::error("corio::dist: the complete script answered " +
                                                           std::to_string(written.size()) + " of " +
                                                           std::to_string(results.size()) + " results");
  co_return written;
}

task<void> pool_ensure_group(redis::client& c, const pool_keys& k) {
  try {
    co_await c.command(command_options{.idempotent = idempotency::yes}, "XGROUP", "CREATE", k.tasks, pool_group, "0",
                       "MKSTREAM");
  } catch (const redis::server_error& e) {
    if (e.code() != "BUSYGROUP") throw;
  }
}

}  // namespace corio::dist::detail
