#pragma once
// A hash map from string keys to values of type V, built for kv's per-shard store: one
// lookup touches one slot cache line and then the one node that holds the key and its value.
//
// Layout. The table is an array of slots {hash, node*}, 16 bytes, four to a cache line;
// open addressing with linear probing, so a probe walks adjacent slots, and a slot's stored
// hash is compared before the key, so a probe reads a node only for an (almost certain)
// match. Each node is one allocation: the V, then the key's bytes right behind it. Compared
// with std::unordered_map<std::string, V> (bucket array -> node before -> node -> key bytes
// on the heap for keys longer than 15 bytes), a GET of a present key misses the cache twice
// instead of three or four times.
//
// Invariants:
// - The capacity is a power of two (or 0 before the first insert); at most 3/4 of the slots
//   are in use, so every probe ends at an empty slot.
// - No tombstones: erase shifts the following entries of the probe run back (backward-shift
//   deletion), so every entry stays reachable from its home slot without crossing an empty
//   slot, and lookups never slow down as keys come and go.
// - Nodes never move: a V* stays valid until its key is erased or the map cleared or
//   destroyed, whatever is inserted meanwhile (growing moves slots, not nodes), as with
//   std::unordered_map.
//
// Who may touch it: one thread (the shard that owns the store). No locks.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>

namespace kv {

namespace detail {

// Key equality, for after the stored hashes matched. Keys of 8 to 16 bytes
// (redis-benchmark's are 16) compare as two 8-byte words, which overlap below 16, inline:
// the call to memcmp cost more than the comparison (2-3% of kv_server's samples under
// GETs).
inline bool same_key(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.size() < 8 || a.size() > 16) return a == b;
  std::uint64_t a0, a1, b0, b1;
  std::memcpy(&a0, a.data(), 8);
  std::memcpy(&b0, b.data(), 8);
  std::memcpy(&a1, a.data() + a.size() - 8, 8);
  std::memcpy(&b1, b.data() + b.size() - 8, 8);
  return ((a0 ^ b0) | (a1 ^ b1)) == 0;
}

}  // namespace detail

template <class V>
class flat_map {
 public:
  flat_map() = default;
  flat_map(const flat_map&) = delete;
  flat_map& operator=(const flat_map&) = delete;
  ~flat_map() { clear(); }

  // The value of `key`, or nullptr.
  V* find(std::string_view key) noexcept { return find(key, hash_of(key)); }

  // The value of `key`, created as V{} if missing; second: whether it was created.
  std::pair<V*, bool> try_emplace(std::string_view key) {
    const std::size_t h = hash_of(key);
    if (V* v = find(key, h)) return {v, false};
    if ((size_ + 1) * 4 > capacity() * 3) grow();
    node* n = node::make(key);
    place(h, n);
    ++size_;
    return {&n->value, true};
  }

  // Starts loading, without waiting, the cache lines a find(key) or try_emplace(key) of
  // each of `keys` will touch: its home slot, then the node that slot holds. A lookup in
  // a table far bigger than the cache waits for two misses, its slot and its node; a
  // shard about to run a batch of commands calls this first so that the batch's misses
  // overlap (two rounds of loads in flight at once) instead of following one another.
  // Reads only: the table is unchanged, and any keys (present or not) are fine.
  void prefetch(std::span<const std::string_view> keys) const noexcept {
    if (size_ == 0) return;  // also: no slot array yet
    // Groups of 16 keys (a pipelined client's usual batch): a core keeps only a couple
    // of dozen misses in flight, so more at once would only queue.
    constexpr std::size_t group = 16;
    std::size_t at[group];
    for (std::size_t first = 0; first < keys.size(); first += group) {
      const std::size_t n = std::min(group, keys.size() - first);
      for (std::size_t i = 0; i < n; ++i) {
        at[i] = home(hash_of(keys[first + i]));
        __builtin_prefetch(&slots_[at[i]]);
      }
      // Reading the first slot waits for its line; the others are in flight meanwhile.
      // Only the home slot's node: a key further down its probe run is rare at 3/4 load.
      for (std::size_t i = 0; i < n; ++i)
        if (const node* p = slots_[at[i]].ptr) {
          __builtin_prefetch(p);
          // A node crosses a line boundary when malloc placed it so: its key's last byte.
          const std::size_t length = keys[first + i].size();
          __builtin_prefetch(p->key_bytes() + (length > 0 ? length - 1 : 0));
        }
    }
  }

  // Removes `key`; false if it was not there.
  bool erase(std::string_view key) noexcept {
    if (size_ == 0) return false;
    const std::size_t h = hash_of(key);
    std::size_t i = home(h);
    for (;; i = next(i)) {
      if (slots_[i].ptr == nullptr) return false;
      if (slots_[i].hash == h && detail::same_key(slots_[i].ptr->key(), key)) break;
    }
    node::destroy(slots_[i].ptr);
    --size_;
    // Backward shift: move each later entry of the run whose home does not lie in the
    // cyclic range (i, j] into the hole, until the run ends at an empty slot.
    for (std::size_t j = next(i); slots_[j].ptr != nullptr; j = next(j)) {
      const std::size_t k = home(slots_[j].hash);
      const bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
      if (stays) continue;
      slots_[i] = slots_[j];
      i = j;
    }
    slots_[i] = slot{};
    return true;
  }

  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return slots_ ? mask_ + 1 : 0; }

  // Frees every node; keeps the slot array (a refilled store needs it again).
  void clear() noexcept {
    for (std::size_t i = 0; i < capacity(); ++i) {
      if (slots_[i].ptr != nullptr) node::destroy(slots_[i].ptr);
      slots_[i] = slot{};
    }
    size_ = 0;
  }

  // Calls fn(key, value) for every entry, in no particular order. fn must not insert or erase.
  template <class Fn>
  void for_each(Fn&& fn) const {
    for (std::size_t i = 0; i < capacity(); ++i)
      if (const node* n = slots_[i].ptr) fn(n->key(), static_cast<const V&>(n->value));
  }

 private:
  // One allocation: the node, then key_size bytes of key.
  struct node {
    V value{};
    std::size_t key_size;

    const char* key_bytes() const noexcept { return reinterpret_cast<const char*>(this + 1); }
    std::string_view key() const noexcept { return {key_bytes(), key_size}; }

    static node* make(std::string_view key) {
      static_assert(std::is_nothrow_default_constructible_v<V>, "nothing to undo after the allocation");
      void* mem = ::operator new(sizeof(node) + key.size());
      if (!key.empty()) std::memcpy(static_cast<char*>(mem) + sizeof(node), key.data(), key.size());
      return ::new (mem) node{V{}, key.size()};
    }
    static void destroy(node* n) noexcept {
      n->~node();
      ::operator delete(static_cast<void*>(n));
    }
  };
  struct slot {
    std::size_t hash = 0;
    node* ptr = nullptr;  // nullptr: empty
  };
  static_assert(sizeof(std::size_t) == 8 && sizeof(slot) == 16, "four slots to a 64-byte cache line");

  static std::size_t hash_of(std::string_view key) noexcept { return std::hash<std::string_view>{}(key); }
  // Fibonacci hashing: the top log2(capacity) bits of hash * 2^64/phi, so every bit of the
  // hash reaches the index whatever the hash function's weaker bits. Needs capacity >= 16.
  std::size_t home(std::size_t h) const noexcept {
    return static_cast<std::size_t>((static_cast<std::uint64_t>(h) * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  std::size_t next(std::size_t i) const noexcept { return (i + 1) & mask_; }

  V* find(std::string_view key, std::size_t h) noexcept {
    if (size_ == 0) return nullptr;  // also: no slots yet
    for (std::size_t i = home(h);; i = next(i)) {
      const slot& s = slots_[i];
      if (s.ptr == nullptr) return nullptr;
      if (s.hash == h && detail::same_key(s.ptr->key(), key)) return &s.ptr->value;
    }
  }

  // Puts n at the first empty slot of its probe run (n's key is known to be absent).
  void place(std::size_t h, node* n) noexcept {
    std::size_t i = home(h);
    while (slots_[i].ptr != nullptr) i = next(i);
    slots_[i] = slot{h, n};
  }

  void grow() {
    const std::size_t old_capacity = capacity();
    const std::size_t new_capacity = old_capacity == 0 ? 16 : old_capacity * 2;
    std::unique_ptr<slot[]> old = std::exchange(slots_, std::make_unique<slot[]>(new_capacity));
    mask_ = new_capacity - 1;
    shift_ = 64 - static_cast<unsigned>(std::countr_zero(new_capacity));
    for (std::size_t i = 0; i < old_capacity; ++i)
      if (old[i].ptr != nullptr) place(old[i].hash, old[i].ptr);
  }

  std::unique_ptr<slot[]> slots_;
  std::size_t mask_ = 0;
  unsigned shift_ = 64;
  std::size_t size_ = 0;
};

}  // namespace kv
