#pragma once
// One shard's key space: string keys to string values with an optional expiry.
//
// Who may touch it: only the shard that owns it (kv_server keeps one per shard and reaches
// another shard's store through corio::submit_to). No locks, no atomics.
//
// Expiry, as in Redis: lazy on access (a key past its deadline is erased when touched and
// reads as missing) plus a periodic sweep (sweep(), called by the shard every 100 ms) so
// that keys nobody reads again do not stay in memory. The sweep pops a min-heap of
// (deadline, key); a heap entry whose key was since overwritten, re-expired or deleted is
// stale and skipped. Stale entries are bounded: when the heap holds more than twice the
// number of keys (plus 1024) it is rebuilt from the map.
//
// Deadlines are milliseconds of std::chrono::steady_clock (immune to wall-clock jumps);
// 0 means "no expiry". Lookups take std::string_view (heterogeneous lookup): reading or
// overwriting an existing key allocates nothing unless the new value outgrows the old one.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kv {

inline std::int64_t now_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct entry {
  std::string value;
  std::int64_t expire_at = 0;  // steady-clock ms; 0: none
};

class store {
 public:
  // The live entry for `key`, or nullptr (erasing it first if it expired).
  entry* find(std::string_view key) {
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    if (it->second.expire_at != 0 && it->second.expire_at <= now_ms()) {
      map_.erase(it);
      return nullptr;
    }
    return &it->second;
  }

  // Sets the value (the entry is created if missing) and returns the entry; the caller
  // then sets or keeps its expiry through expire().
  entry& upsert(std::string_view key, std::string_view value) {
    auto it = map_.find(key);
    if (it == map_.end()) it = map_.emplace(std::string(key), entry{}).first;
    it->second.value.assign(value);
    return it->second;
  }

  // Sets the deadline of `e` (whose key is `key`); 0 removes it.
  void expire(std::string_view key, entry& e, std::int64_t at) {
    e.expire_at = at;
    if (at == 0) return;
    heap_.emplace_back(at, std::string(key));
    std::push_heap(heap_.begin(), heap_.end(), later);
  }

  bool erase(std::string_view key) {
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    const bool live = it->second.expire_at == 0 || it->second.expire_at > now_ms();
    map_.erase(it);
    return live;
  }

  // Keys, counting expired ones the sweep has not reached yet (like Redis' DBSIZE).
  std::size_t size() const noexcept { return map_.size(); }

  void clear() {
    map_.clear();
    heap_.clear();
  }

  // Erases keys whose deadline passed, at most `budget` heap entries per call (so one
  // call never stalls the shard). Returns how many keys it erased.
  std::size_t sweep(std::int64_t now, std::size_t budget = 10000) {
    std::size_t erased = 0;
    while (!heap_.empty() && budget-- > 0 && heap_.front().first <= now) {
      std::pop_heap(heap_.begin(), heap_.end(), later);
      auto [at, key] = std::move(heap_.back());
      heap_.pop_back();
      auto it = map_.find(key);
      if (it != map_.end() && it->second.expire_at == at) {
        map_.erase(it);
        ++erased;
      }
    }
    if (heap_.size() > 2 * map_.size() + 1024) rebuild_heap();
    return erased;
  }

  std::size_t pending_expiries() const noexcept { return heap_.size(); }

 private:
  // Deliberately not noexcept: libstdc++ then stores each node's hash code, so a lookup
  // compares hash codes before bytes and never rehashes a neighbour's key to find the end
  // of its bucket (with a "fast" noexcept hash that cost a third of a GET's CPU time).
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using deadline = std::pair<std::int64_t, std::string>;
  static bool later(const deadline& a, const deadline& b) noexcept { return a.first > b.first; }

  void rebuild_heap() {
    heap_.clear();
    for (const auto& [key, e] : map_)
      if (e.expire_at != 0) heap_.emplace_back(e.expire_at, key);
    std::make_heap(heap_.begin(), heap_.end(), later);
  }

  std::unordered_map<std::string, entry, string_hash, std::equal_to<>> map_;
  std::vector<deadline> heap_;  // min-heap on the deadline
};

}  // namespace kv
