#pragma once
// The wire protocol of the distributed task pool (task_pool.hpp, worker.hpp): its keys,
// Lua scripts and entries. Every key of pool P carries the hash tag {P}, so a pool lives in
// one Redis Cluster slot.
//
//   {P}:tasks            stream of tasks; fields tid, fn, args, reply; consumer group
//                        "workers" (created from id 0 at first use)
//   {P}:results:S        results for submitter S; an entry holds one or more results,
//                        each a field TID whose value is "STATUS N PAYLOAD": status ok |
//                        error | dead, N deliveries, then the value's or the error's
//                        bytes; the submitter trims what it has read (XTRIM MINID)
//   {P}:dead             dead-letter stream: tasks that killed their worker too often
//   {P}:stats            hash: written, duplicates, undeliverable, dead (counts since the
//                        pool began)
//
// Delivery (at least once, with leases): a worker takes a task with `fetch` (first a task
// whose holder has not renewed its lease, XAUTOCLAIM, else new ones, XREADGROUP), renews
// the leases of all it runs with one `renew` every lease/3 (XCLAIM by the holder only: a worker that
// lost its task cannot take it back), and finishes with `complete`, which acknowledges
// the task and writes the result only if the XACK found the entry pending (the first
// completion of a task; the consumer group's pending list is the dedupe, no key per
// task), then deletes the task. A stalled worker that wakes after its task was taken
// over and finished therefore adds no second result. A reply key that holds no stream
// (a foreign write: someone SET it) is found by TYPE before the script writes anything:
// its tasks are acknowledged and deleted as any, their results dropped and counted
// (undeliverable), and the batch's other reply streams are written as normal; a burial
// still writes the dead letter, only the reply is skipped. The scripts run by SHA1
// (detail/lua_script.hpp). A task
// claimed for the (max_deliveries+1)-th time has killed its worker max_deliveries times:
// `fetch` moves it to {P}:dead and tells the submitter, in a second script (`bury`, whose
// KEYS name the reply stream read from the claimed entry), if the XACK still finds it
// pending.
//
// Redis Cluster: every key of a script is in its KEYS (a cluster checks only those before
// running it, and refuses a script reaching a key of another node), all with the hash tag
// {P}: one slot, one node, one atomic script even while the slot migrates (the node
// answers ASK or TRYAGAIN before running, and the client follows). A task whose reply
// stream is not the pool's (not "{P}:...": not from a corio submitter) is buried unrun
// without a reply: its result could not be written in the same script. The complete
// script names every reply stream of its batch in KEYS.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../../coro/task.hpp"
#include "../redis_client.hpp"

namespace corio::dist::detail {

struct pool_keys {
  explicit pool_keys(const std::string& pool);
  std::string name;  // P
  std::string tasks, dead, stats;
  std::string results(const std::string& submitter) const;
  // Is `key` one of the pool's ("{P}:...", so in its cluster slot)?
  bool holds(std::string_view key) const;
};

inline constexpr std::string_view pool_group = "workers";

// A task as a worker holds it.
struct pool_task {
  std::string entry;  // stream id
  std::string tid, fn, args, reply;
  std::int64_t deliveries = 1;
};

// fetch's outcome.
struct fetched {
  enum class kind { tasks, none, group_recreated, dead_lettered } what = kind::none;
  std::vector<pool_task> tasks;
};

// A task taken over (if one's lease ran out) and up to `count` new ones, in one write: a
// claim script and a plain XREADGROUP (no Lua per task). So up to count + 1 tasks.
task<fetched> pool_fetch(redis::client& c, const pool_keys& k, const std::string& consumer, std::chrono::milliseconds lease,
                         unsigned max_deliveries, unsigned count);
// The tasks of a reply of XREADGROUP (the blocking read of new tasks); none when nil.
// Throws redis::unexpected_reply for any other shape (as fetch does for its replies).
std::vector<pool_task> pool_tasks_from_read(const resp::reply& r, const pool_keys& k);
// Moves t to {P}:dead with `why`, tells its submitter (not when its reply stream is not
// the pool's, nor when its reply key holds no stream), acknowledges and deletes it; false (nothing written) when its entry was no
// longer pending: its result was written meanwhile, and that one counts. Throws
// redis::server_error WRONGTYPE, writing nothing, when {P}:dead holds no stream.
task<bool> pool_bury(redis::client& c, const pool_keys& k, const pool_task& t, const std::string& why);
// Renews the leases of `entries` (one script); returns how many were still ours.
task<std::size_t> pool_renew(redis::client& c, const pool_keys& k, const std::string& consumer,
                             const std::vector<std::string>& entries);
// A finished task and what to send back: status ok | error, the encoded value or error.
struct pool_result {
  pool_task task;
  std::string status;
  std::string payload;
};
// What became of one result.
struct pool_outcome {
  enum class kind {
    written,        // recorded in its reply stream
    duplicate,      // one was recorded already (the task was taken over and done elsewhere)
    undeliverable,  // the task is acknowledged, but its reply key holds no stream: dropped
  } what = kind::written;
  std::string held;  // undeliverable: what the reply key holds ("string", "hash", ...)
};
// Records the results of several tasks in one script; one outcome per result, in their
// order. Throws redis::unexpected_reply for an answer that is not one outcome per result.
task<std::vector<pool_outcome>> pool_complete(redis::client& c, const pool_keys& k,
                                              const std::vector<pool_result>& results);
// A result as the results stream holds it, and back.
std::string pool_result_value(const std::string& status, std::int64_t deliveries, std::string_view payload);
struct parsed_result {
  std::string_view status, payload;
  std::int64_t deliveries = 0;
};
parsed_result pool_parse_result(std::string_view value);

task<void> pool_ensure_group(redis::client& c, const pool_keys& k);

}  // namespace corio::dist::detail
