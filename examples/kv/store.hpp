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
//
// The keys live in a flat_map (flat_map.hpp: open addressing, the hash in the slot, key and
// entry in one node): a lookup touches one slot line and one node, where
// std::unordered_map touched three or four lines. An entry& stays valid until its key is
// erased (docs/kv_server.md has the measured effect).

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "flat_map.hpp"

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
    entry* e = map_.find(key);
    if (e == nullptr) return nullptr;
    if (e->expire_at != 0 && e->expire_at <= now_ms()) {
      map_.erase(key);
      return nullptr;
    }
    return e;
  }

  // Starts loading what looking up each of `keys` will touch (flat_map::prefetch): call
  // before running a batch of commands on them, so their cache misses overlap.
  void prefetch(std::span<const std::string_view> keys) const noexcept { map_.prefetch(keys); }

  // Sets the value (the entry is created if missing) and returns the entry; the caller
  // then sets or keeps its expiry through expire().
  entry& upsert(std::string_view key, std::string_view value) {
    entry& e = *map_.try_emplace(key).first;
    e.value.assign(value);
    return e;
  }

  // Sets the deadline of `e` (whose key is `key`); 0 removes it.
  void expire(std::string_view key, entry& e, std::int64_t at) {
    e.expire_at = at;
    if (at == 0) return;
    heap_.emplace_back(at, std::string(key));
    std::push_heap(heap_.begin(), heap_.end(), later);
  }

  bool erase(std::string_view key) {
    const entry* e = map_.find(key);
    if (e == nullptr) return false;
    const bool live = e->expire_at == 0 || e->expire_at > now_ms();
    map_.erase(key);
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
      const entry* e = map_.find(key);
      if (e != nullptr && e->expire_at == at) {
        map_.erase(key);
        ++erased;
      }
    }
    if (heap_.size() > 2 * map_.size() + 1024) rebuild_heap();
    return erased;
  }

  std::size_t pending_expiries() const noexcept { return heap_.size(); }

 private:
  using deadline = std::pair<std::int64_t, std::string>;
  static bool later(const deadline& a, const deadline& b) noexcept { return a.first > b.first; }

  void rebuild_heap() {
    heap_.clear();
    map_.for_each([this](std::string_view key, const entry& e) {
      if (e.expire_at != 0) heap_.emplace_back(e.expire_at, std::string(key));
    });
    std::make_heap(heap_.begin(), heap_.end(), later);
  }

  flat_map<entry> map_;
  std::vector<deadline> heap_;  // min-heap on the deadline
};

}  // namespace kv
