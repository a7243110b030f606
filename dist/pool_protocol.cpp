#include "detail/pool_protocol.hpp"

#include "detail/lua_claim.hpp"

#include <string>

namespace corio::dist::detail {

namespace {

using redis::command_options;
using redis::idempotency;

// KEYS tasks; ARGV group, consumer, lease ms, max deliveries, count. {1, then per task:
// entry, tid, fn, args, reply, deliveries} (one task taken over, or up to `count` new ones)
// | {0} | {2} (group re-created) | {3, entry, tid, fn, args, reply, deliveries} (a task
// taken over once too often: the caller buries it, with the keys it names, in bury_script).
// Every key it touches is in KEYS: a cluster checks only those before running a script, so
// a script that reached further could meet a key already migrated to another node.
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
  local f = fields(e)
  if n > tonumber(ARGV[4]) then return {3, e[1], f.tid, f.fn, f.args, f.reply, n} end
  return {1, e[1], f.tid, f.fn, f.args, f.reply, n}
end
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[5], 'STREAMS', KEYS[1], '>')
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

// KEYS tasks, dead, stats, then (when the reply stream is the pool's) done marker, reply
// stream; ARGV group, entry, tid, fn, args, reply, deliveries, why, ttl ms. Moves the task
// to the dead letters, tells its submitter once, acknowledges and deletes it.
constexpr std::string_view bury_script = R"lua(
redis.call('XADD', KEYS[2], '*', 'tid', ARGV[3], 'fn', ARGV[4], 'args', ARGV[5], 'reply', ARGV[6], 'deliveries', ARGV[7], 'error', ARGV[8])
if #KEYS == 5 and redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[9]) then
  redis.call('XADD', KEYS[5], '*', 'tid', ARGV[3], 'status', 'dead', 'v', ARGV[8], 'n', ARGV[7])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'dead', 1)
return 1
)lua";

// KEYS tasks, stats, then per task: reply stream, done marker; ARGV group, ttl ms, then
// per task: entry, tid, status, payload, deliveries. Per task 1 (written) or 0 (a result
// was there).
constexpr std::string_view complete_script = R"lua(
local out, ids = {}, {}
local written, duplicates = 0, 0
for i = 3, #ARGV, 5 do
  local k = 3 + 2 * (i - 3) / 5
  if redis.call('SET', KEYS[k + 1], '1', 'NX', 'PX', ARGV[2]) then
    redis.call('XADD', KEYS[k], '*', 'tid', ARGV[i + 1], 'status', ARGV[i + 2], 'v', ARGV[i + 3], 'n', ARGV[i + 4])
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

bool pool_keys::holds(std::string_view key) const { return key.starts_with(tasks.substr(0, tasks.size() - 5)); }

std::string pool_keys::results(const std::string& submitter) const {
  return tasks.substr(0, tasks.size() - 5) + "results:" + submitter;
}

task<fetched> pool_fetch(redis::client& c, const pool_keys& k, const std::string& consumer, std::chrono::milliseconds lease,
                         unsigned max_deliveries, std::chrono::milliseconds result_ttl, unsigned count) {
  resp::reply r = co_await c.command("EVAL", fetch_script(), "1", k.tasks, pool_group, consumer, ms(lease),
                                     std::to_string(max_deliveries), std::to_string(count));
  fetched out;
  const std::int64_t status = r.elements.empty() ? 0 : r.elements[0].integer;
  if (status == 2) out.what = fetched::kind::group_recreated;
  if (status == 1 || status == 3) {
    out.what = fetched::kind::tasks;
    auto& e = r.elements;
    for (std::size_t i = 1; i + 6 <= e.size(); i += 6)
      out.tasks.push_back({std::move(e[i].str), std::move(e[i + 1].str), std::move(e[i + 2].str), std::move(e[i + 3].str),
                           std::move(e[i + 4].str), e[i + 5].integer});
  }
  if (status == 3 && !out.tasks.empty()) {
    const pool_task t = std::move(out.tasks.front());
    out.tasks.clear();
    co_await pool_bury(c, k, t,
                       "the task was delivered " + std::to_string(t.deliveries) +
                           " times and its worker died each time (moved to " + k.dead + ")",
                       result_ttl);
    out.what = fetched::kind::dead_lettered;
  }
  co_return out;
}

task<void> pool_bury(redis::client& c, const pool_keys& k, const pool_task& t, const std::string& why,
                     std::chrono::milliseconds result_ttl) {
  const std::string n = std::to_string(t.deliveries), marker = k.done_prefix + t.tid;
  const bool tell = k.holds(t.reply);
  std::vector<std::string_view> argv = {"EVAL", bury_script, tell ? "5" : "3", k.tasks, k.dead, k.stats};
  if (tell) argv.insert(argv.end(), {marker, t.reply});
  const std::string ttl = ms(result_ttl);
  argv.insert(argv.end(), {pool_group, t.entry, t.tid, t.fn, t.args, t.reply, n, why, ttl});
  co_await c.command_argv(argv);
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
  const std::string numkeys = std::to_string(2 + 2 * results.size());
  std::vector<std::string_view> argv = {"EVAL", complete_script, numkeys, k.tasks, k.stats};
  for (const pool_result& r : results) {
    markers.push_back(k.done_prefix + r.task.tid);
    argv.insert(argv.end(), {r.task.reply, markers.back()});
  }
  argv.insert(argv.end(), {pool_group, ttl});
  for (const pool_result& r : results) {
    counts.push_back(std::to_string(r.task.deliveries));
    argv.insert(argv.end(), {r.task.entry, r.task.tid, r.status, r.payload, counts.back()});
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
