#include "detail/pool_protocol.hpp"

#include "detail/lua_claim.hpp"
#include "detail/lua_script.hpp"
#include "detail/reply_check.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <string>

#include "../coro/when_all.hpp"
#include "resp.hpp"

namespace corio::dist::detail {

namespace {

using redis::command_options;
using redis::idempotency;

// KEYS tasks; ARGV group, consumer, lease ms, max deliveries. {1, deliveries, {entry}}
// (a task taken over; the entry as XAUTOCLAIM gives it) | {0} | {2} (group re-created) |
// {3, deliveries, {entry}} (a task taken over once too often: the caller buries it with
// the bury script, whose KEYS name its reply stream). Only KEYS[1] is touched: a cluster checks
// only KEYS before running a script, and the reply stream is known only after the claim.
constexpr std::string_view claim_script_rest = R"lua(
local e = c[2][1]
if not e then return {0} end
local n = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)[1][4]
if n <= tonumber(ARGV[4]) then return {1, n, {e}} end
return {3, n, {e}}
)lua";

// What KEYS[k] holds when it is no stream an XADD could write ('string', 'hash', ...),
// else nil. A foreign write (someone SET a reply key) must be found before a script writes
// anything: Redis keeps the writes of a script that fails halfway, so an XADD failing with
// WRONGTYPE after the XACK would lose the task's result and leave the rest undone.
constexpr std::string_view unwritable_lua = R"lua(
local function unwritable(k)
  local t = redis.call('TYPE', KEYS[k])['ok']
  if t ~= 'stream' and t ~= 'none' then return t end
end
)lua";

// KEYS tasks, dead, stats, then the reply stream when it is the pool's; ARGV group,
// entry, tid, fn, args, reply, deliveries, why, result value. 1: moved to the dead letters
// (and the submitter told, unless its reply key holds no stream: the dead letter is the
// record then); 0: the XACK found the entry no longer pending (its holder finished it
// after all, and that result counts), so nothing is written. The XACK decides, as in
// the complete script: a task gets exactly one result, its own or the dead letter's. A
// dead-letter stream that holds no stream is an error before any write: the task stays
// pending (and is claimed and buried again later), never acknowledged and then lost.
constexpr std::string_view bury_script_rest = R"lua(
local dead = unwritable(2)
if dead then
  return redis.error_reply('WRONGTYPE the dead-letter stream ' .. KEYS[2] .. ' holds a ' .. dead .. ', not a stream (a foreign write?): task ' .. ARGV[2] .. ' left pending')
end
local tell = #KEYS == 4 and not unwritable(4)
local buried = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if buried == 1 then
  redis.call('XADD', KEYS[2], '*', 'tid', ARGV[3], 'fn', ARGV[4], 'args', ARGV[5], 'reply', ARGV[6], 'deliveries', ARGV[7], 'error', ARGV[8])
  if tell then redis.call('XADD', KEYS[4], '*', ARGV[3], ARGV[9]) end
  redis.call('HINCRBY', KEYS[3], 'dead', 1)
end
redis.call('XDEL', KEYS[1], ARGV[2])
return buried
)lua";

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

// KEYS tasks, stats, then the reply streams (each the pool's: one slot); ARGV group, then
// per reply stream (in KEYS' order): k, and k times entry, tid, result (pool_protocol.hpp's
// "STATUS N PAYLOAD"). Per task 1 (written), 0 (dropped: a duplicate) or {2, type}
// (undeliverable: the reply key holds a `type`, not a stream; the task is acknowledged
// and deleted all the same, its result dropped and counted, the batch's other streams
// written). The XACK decides: it answers 1 only for the first completion of an entry
// still pending, whoever holds it now, so a worker that wakes after its task was taken
// over and finished elsewhere adds nothing. The results for one stream share entries (256
// results each: unpack stays far below Lua's stack limit); the finished tasks are deleted.
constexpr std::string_view complete_script_rest = R"lua(
local held = {}
for s = 3, #KEYS do held[s] = unwritable(s) end
local out, ids = {}, {}
local written, dropped = 0, 0
local i, s = 2, 3
while i <= #ARGV do
  local stream, last = KEYS[s], i + 3 * tonumber(ARGV[i])
  local r = {}
  for j = i + 1, last, 3 do
    ids[#ids + 1] = ARGV[j]
    if redis.call('XACK', KEYS[1], ARGV[1], ARGV[j]) == 0 then
      out[#out + 1] = 0
    elseif held[s] then
      out[#out + 1] = {2, held[s]}
      dropped = dropped + 1
    else
      r[#r + 1] = ARGV[j + 1]
      r[#r + 1] = ARGV[j + 2]
      out[#out + 1] = 1
    end
  end
  for x = 1, #r, 512 do redis.call('XADD', stream, '*', unpack(r, x, math.min(x + 511, #r))) end
  written = written + #r / 2
  i, s = last + 1, s + 1
end
for j = 1, #ids, 512 do redis.call('XDEL', KEYS[1], unpack(ids, j, math.min(j + 511, #ids))) end
if written > 0 then redis.call('HINCRBY', KEYS[2], 'written', written) end
if dropped > 0 then redis.call('HINCRBY', KEYS[2], 'undeliverable', dropped) end
if written + dropped < #ids then redis.call('HINCRBY', KEYS[2], 'duplicates', #ids - written - dropped) end
return out
)lua";

std::string dead_why(const pool_keys& k, std::int64_t deliveries) {
  return "the task was delivered " + std::to_string(deliveries) + " times and its worker died each time (moved to " +
         k.dead + ")";
}

const lua_script& claim_script() {
  static const lua_script script(std::string(claim_lapsed_lua) + std::string(claim_script_rest));
  return script;
}

std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count() > 0 ? d.count() : 1); }

std::string who(const pool_keys& k) { return "corio::dist::task_pool \"" + k.name + "\""; }

// Entries as XREADGROUP and XAUTOCLAIM give them: [[id, [field, value, ...]], ...], each
// id "ms-seq", the fields bulk strings in pairs, or nil for an entry deleted meanwhile (a
// task without its fields, which the worker buries unrun: it has no reply stream).
void append_tasks(std::vector<pool_task>& out, const resp::reply& entries, std::int64_t deliveries, const pool_keys& k,
                  std::string_view command) {
  for (const resp::reply& e : entries.elements) {
    const bool fields = is_array(e, 2) && (e.elements[1].is_nil() || is_array(e.elements[1]));
    if (!fields || !is_bulk(e.elements[0]) || !stream_id::parse(e.elements[0].str) ||
        e.elements[1].elements.size() % 2 != 0)
      unexpected(who(k), command, "the entry " + describe(e) + ", not [ms-seq id, [field, value, ...]]");
    pool_task& t = out.emplace_back();
    t.entry = e.elements[0].str;
    t.deliveries = deliveries;
    const auto& f = e.elements[1].elements;
    for (std::size_t i = 0; i < f.size(); i += 2) {
      if (!is_bulk(f[i]) || !is_bulk(f[i + 1]))
        unexpected(who(k), command, "the entry " + describe(e) + ", a field that is no bulk string");
      const std::string& name = f[i].str;
      std::string* field =
          name == "tid" ? &t.tid : name == "fn" ? &t.fn : name == "args" ? &t.args : name == "reply" ? &t.reply : nullptr;
      if (field) *field = f[i + 1].str;
    }
  }
}

// XREADGROUP's answer: nil (nothing new) or [[the tasks stream, [entries]]].
void append_read(std::vector<pool_task>& out, const resp::reply& r, const pool_keys& k) {
  if (r.is_nil()) return;
  if (!is_array(r, 1) || !is_array(r.elements[0], 2) || r.elements[0].elements[0].str != k.tasks ||
      !is_array(r.elements[0].elements[1]))
    unexpected(who(k), "XREADGROUP", describe(r) + ", not nil or [[" + k.tasks + ", [entries]]]");
  append_tasks(out, r.elements[0].elements[1], 1, k, "XREADGROUP");
}

// The plain read of new tasks beside the claim script. A missing group (NOGROUP) reads
// nothing: the claim re-creates it and answers {2}, which when_all would drop for this
// error. The claim is written first, but where its EVALSHA meets NOSCRIPT (a restart
// without persistence loses the scripts with the group) its EVAL runs after this read.
task<resp::reply> read_new(redis::client& c, const pool_keys& k, const std::string& consumer, const std::string& n) {
  try {
    co_return co_await c.command("XREADGROUP", "GROUP", pool_group, consumer, "COUNT", n, "STREAMS", k.tasks, ">");
  } catch (const redis::server_error& e) {
    if (e.code() != "NOGROUP") throw;
  }
  co_return resp::reply{};
}

// A type TYPE names (string, hash, ..., or a module's, 9 characters of [A-Za-z0-9_-]) other
// than the two an XADD accepts. It goes into a warning: a lying server's megabyte does not.
bool is_unwritable_type(const resp::reply& r) {
  const auto named = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-'; };
  return is_bulk(r) && !r.str.empty() && r.str.size() <= 32 && std::all_of(r.str.begin(), r.str.end(), named) &&
         r.str != "stream" && r.str != "none";
}

}  // namespace

pool_keys::pool_keys(const std::string& pool)
    : name(pool), tasks("{" + pool + "}:tasks"), dead("{" + pool + "}:dead"), stats("{" + pool + "}:stats") {}

bool pool_keys::holds(std::string_view key) const { return key.starts_with(tasks.substr(0, tasks.size() - 5)); }

std::string pool_keys::results(const std::string& submitter) const {
  return tasks.substr(0, tasks.size() - 5) + "results:" + submitter;
}

task<fetched> pool_fetch(redis::client& c, const pool_keys& k, const std::string& consumer, std::chrono::milliseconds lease,
                         unsigned max_deliveries, unsigned count) {
  const std::string lease_ms = ms(lease), max = std::to_string(max_deliveries), n = std::to_string(count);
  const std::string_view args[] = {"1", k.tasks, pool_group, consumer, lease_ms, max};
  // One write: the claim first (Redis runs them in order, so a group it re-creates is
  // there for the read), then a plain read of new tasks, which costs no Lua per task.
  auto [claimed, read] = co_await when_all(claim_script().run(c, args), read_new(c, k, consumer, n));
  fetched out;
  // {0} | {2} | {1 or 3, deliveries, {entry}}: anything else is not the claim script's.
  const auto& e = claimed.elements;
  const std::int64_t status = is_array(claimed) && !e.empty() && is_integer(e[0]) ? e[0].integer : -1;
  const bool took = status == 1 || status == 3;
  if ((status != 0 && status != 2 && !took) || e.size() != (took ? 3u : 1u) ||
      (took && (!is_integer(e[1]) || e[1].integer < 1 || !is_array(e[2], 1))))
    unexpected(who(k), "the claim script", describe(claimed) + ", not {0}, {2} or {1 or 3, deliveries, {entry}}");
  if (status == 2) out.what = fetched::kind::group_recreated;
  if (took) append_tasks(out.tasks, e[2], e[1].integer, k, "the claim script");
  if (status == 3 && !out.tasks.empty()) {  // buried before the new tasks are appended
    const pool_task t = std::move(out.tasks.front());
    out.tasks.clear();
    if (co_await pool_bury(c, k, t, dead_why(k, t.deliveries))) out.what = fetched::kind::dead_lettered;
  }
  append_read(out.tasks, read, k);
  if (!out.tasks.empty() && out.what == fetched::kind::none) out.what = fetched::kind::tasks;
  co_return out;
}

task<bool> pool_bury(redis::client& c, const pool_keys& k, const pool_task& t, const std::string& why) {
  static const lua_script script{std::string(unwritable_lua) + std::string(bury_script_rest)};
  const std::string n = std::to_string(t.deliveries), value = pool_result_value("dead", t.deliveries, why);
  const bool tell = k.holds(t.reply);  // a foreign stream may live on another node
  std::vector<std::string_view> args = {tell ? "4" : "3", k.tasks, k.dead, k.stats};
  if (tell) args.push_back(t.reply);
  args.insert(args.end(), {pool_group, t.entry, t.tid, t.fn, t.args, t.reply, n, why, value});
  const resp::reply r = co_await script.run(c, args, {.idempotent = idempotency::yes});
  if (!is_integer(r) || r.integer < 0 || r.integer > 1)
    unexpected(who(k), "the bury script", describe(r) + ", not 1 (buried) or 0 (finished meanwhile)");
  co_return r.integer == 1;
}

std::vector<pool_task> pool_tasks_from_read(const resp::reply& r, const pool_keys& k) {
  std::vector<pool_task> out;
  append_read(out, r, k);
  return out;
}

task<std::size_t> pool_renew(redis::client& c, const pool_keys& k, const std::string& consumer,
                             const std::vector<std::string>& entries) {
  static const lua_script script{std::string(renew_script)};
  std::vector<std::string_view> args = {"1", k.tasks, pool_group, consumer};
  args.insert(args.end(), entries.begin(), entries.end());
  const resp::reply r = co_await script.run(c, args, {.idempotent = idempotency::yes});
  // At most all of them: leases_lost, entries minus this, must not wrap (a lying server).
  const bool counted = r.type == resp::reply::kind::integer;
  if (!counted || r.integer < 0 || static_cast<std::uint64_t>(r.integer) > entries.size())
    throw redis::unexpected_reply("corio::dist: the renew script answered " +
                                  (counted ? std::to_string(r.integer) : "no count") + " for " +
                                  std::to_string(entries.size()) + " leases");
  co_return static_cast<std::size_t>(r.integer);
}

std::string pool_result_value(const std::string& status, std::int64_t deliveries, std::string_view payload) {
  std::string v = status + " " + std::to_string(deliveries) + " ";
  v.append(payload);
  return v;
}

parsed_result pool_parse_result(std::string_view value) {
  parsed_result r;
  const auto a = value.find(' ');
  const auto b = a == std::string_view::npos ? a : value.find(' ', a + 1);
  std::int64_t n = 0;
  if (b == std::string_view::npos || !resp::parse_int64(value.substr(a + 1, b - a - 1), n)) {
    r.status = "error";  // not ours: reported as a result that makes no sense
    return r;
  }
  r.status = value.substr(0, a);
  r.deliveries = n;
  r.payload = value.substr(b + 1);
  return r;
}

task<std::vector<pool_outcome>> pool_complete(redis::client& c, const pool_keys& k,
                                              const std::vector<pool_result>& results) {
  static const lua_script script{std::string(unwritable_lua) + std::string(complete_script_rest)};
  // Grouped by reply stream (one, usually: the one submitter), in the order given.
  std::vector<std::size_t> order(results.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return results[a].task.reply < results[b].task.reply; });
  std::vector<std::string> values, counts;
  values.reserve(results.size());
  counts.reserve(results.size() + 1);
  // The reply streams are KEYS (a cluster routes and checks by them), so they come first.
  std::vector<std::string_view> streams;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::string& stream = results[order[i]].task.reply;
    if (!k.holds(stream))
      throw std::invalid_argument("corio::dist: a result for reply stream \"" + stream + "\", not one of " + k.tasks +
                                  "'s keys (the worker buries such tasks unrun)");
    if (streams.empty() || streams.back() != stream) streams.push_back(stream);
  }
  counts.push_back(std::to_string(2 + streams.size()));
  std::vector<std::string_view> args = {counts.back(), k.tasks, k.stats};
  args.insert(args.end(), streams.begin(), streams.end());
  args.push_back(pool_group);
  for (std::size_t i = 0; i < order.size();) {
    const std::string& stream = results[order[i]].task.reply;
    std::size_t j = i;
    while (j < order.size() && results[order[j]].task.reply == stream) ++j;
    counts.push_back(std::to_string(j - i));
    args.push_back(counts.back());
    for (; i < j; ++i) {
      const pool_result& r = results[order[i]];
      values.push_back(pool_result_value(r.status, r.task.deliveries, r.payload));
      args.insert(args.end(), {r.task.entry, r.task.tid, values.back()});
    }
  }
  const resp::reply r = co_await script.run(c, args, {.idempotent = idempotency::yes});
  if (r.elements.size() != results.size())
    throw redis::unexpected_reply("corio::dist: the complete script answered " + std::to_string(r.elements.size()) +
                                  " of " + std::to_string(results.size()) + " results");
  std::vector<pool_outcome> outcomes(results.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    const resp::reply& w = r.elements[i];
    pool_outcome& o = outcomes[order[i]];
    if (is_integer(w) && (w.integer == 0 || w.integer == 1)) {
      o.what = w.integer == 1 ? pool_outcome::kind::written : pool_outcome::kind::duplicate;
    } else if (is_array(w, 2) && is_integer(w.elements[0]) && w.elements[0].integer == 2 &&
               is_unwritable_type(w.elements[1])) {
      o.what = pool_outcome::kind::undeliverable;
      o.held = w.elements[1].str;
    } else {
      unexpected(who(k), "the complete script",
                 describe(w) + " for a result, not 1 (written), 0 (a duplicate) or [2, the reply key's type] "
                               "(undeliverable)");
    }
  }
  co_return outcomes;
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
