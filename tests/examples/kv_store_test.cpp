// kv_server's per-shard key space: the open-addressing table (examples/kv/flat_map.hpp)
// against std::unordered_map as an oracle over 200,000 random keys with erases and growth,
// and the store on top (examples/kv/store.hpp): overwrite, erase, lazy expiry, the sweep,
// the DBSIZE count, big values, values that stay put while the table grows.
#include <doctest/doctest.h>

#include "flat_map.hpp"
#include "store.hpp"

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

// Keys of the form redis-benchmark -r uses, plus random lengths (0 to 40 bytes) and bytes
// (NUL included) so short, SSO-sized and long keys all occur.
std::string random_key(std::mt19937_64& rng) {
  if (rng() % 2 == 0) return "key:" + std::to_string(rng() % 1'000'000'000'000ull);
  std::string k(rng() % 41, '\0');
  for (char& c : k) c = static_cast<char>(rng() % 256);
  return k;
}

std::size_t count_entries(const kv::flat_map<int>& m) {
  std::size_t n = 0;
  m.for_each([&](std::string_view, const int&) { ++n; });
  return n;
}

}  // namespace

TEST_CASE("flat_map agrees with std::unordered_map over 200,000 random keys with inserts, overwrites and erases") {
  std::mt19937_64 rng(20261205);
  kv::flat_map<int> map;
  std::unordered_map<std::string, int> oracle;
  std::vector<std::string> keys;
  for (int i = 0; i < 200'000; ++i) keys.push_back(random_key(rng));

  for (int round = 0; round < 3; ++round) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::string& k = keys[rng() % keys.size()];
      const int op = static_cast<int>(rng() % 4);
      if (op < 3) {  // insert or overwrite (more inserts than erases: the table grows)
        auto [v, created] = map.try_emplace(k);
        const bool oracle_created = oracle.find(k) == oracle.end();
        REQUIRE(created == oracle_created);
        *v = static_cast<int>(i);
        oracle[k] = static_cast<int>(i);
      } else {
        REQUIRE(map.erase(k) == (oracle.erase(k) == 1));
      }
    }
    REQUIRE(map.size() == oracle.size());
    for (const std::string& k : keys) {
      const int* v = map.find(k);
      const auto it = oracle.find(k);
      REQUIRE((v != nullptr) == (it != oracle.end()));
      if (v != nullptr) REQUIRE(*v == it->second);
    }
    std::size_t visited = 0;
    map.for_each([&](std::string_view k, const int& v) {
      ++visited;
      const auto it = oracle.find(std::string(k));
      REQUIRE(it != oracle.end());
      REQUIRE(v == it->second);
    });
    REQUIRE(visited == oracle.size());
    CHECK(map.size() * 4 <= map.capacity() * 3);  // the load factor bound holds
  }
  // Erasing every key empties the table (backward shift left every key findable until then).
  for (const auto& [k, v] : oracle) REQUIRE(map.erase(k));
  CHECK(map.size() == 0);
  CHECK(count_entries(map) == 0);
  for (const std::string& k : keys) REQUIRE(map.find(k) == nullptr);
}

TEST_CASE("flat_map values keep their address while the table grows 16 to 65,536 slots") {
  kv::flat_map<int> map;
  int* first = map.try_emplace("first").first;
  *first = 7;
  const std::size_t initial = map.capacity();
  for (int i = 0; i < 40'000; ++i) map.try_emplace("k" + std::to_string(i));
  CHECK(initial == 16);
  CHECK(map.capacity() == 65'536);
  CHECK(map.find("first") == first);
  CHECK(*first == 7);
}

TEST_CASE("flat_map tells keys apart that differ only in length or by a NUL byte, and takes the empty key") {
  kv::flat_map<int> map;
  *map.try_emplace("").first = 1;
  *map.try_emplace(std::string_view("a\0", 2)).first = 2;
  *map.try_emplace("a").first = 3;
  CHECK(map.size() == 3);
  CHECK(*map.find("") == 1);
  CHECK(*map.find(std::string_view("a\0", 2)) == 2);
  CHECK(*map.find("a") == 3);
  CHECK(map.find(std::string_view("a\0\0", 3)) == nullptr);
  CHECK(map.erase(""));
  CHECK_FALSE(map.erase(""));
  CHECK(map.find("") == nullptr);
  CHECK(*map.find("a") == 3);
}

TEST_CASE("flat_map clear frees every entry, keeps its slots, and takes new keys") {
  kv::flat_map<int> map;
  for (int i = 0; i < 1000; ++i) *map.try_emplace(std::to_string(i)).first = i;
  const std::size_t capacity = map.capacity();
  map.clear();
  CHECK(map.size() == 0);
  CHECK(map.capacity() == capacity);
  CHECK(map.find("5") == nullptr);
  *map.try_emplace("5").first = 50;
  CHECK(*map.find("5") == 50);
  CHECK(count_entries(map) == 1);
}

TEST_CASE("flat_map key equality tells apart keys of 0 to 40 bytes that differ in any one byte or in length") {
  // The table compares keys only after their 64-bit hashes matched, so the oracle test
  // above never meets two different keys here: this checks the comparison itself.
  for (std::size_t n = 0; n <= 40; ++n) {
    std::string a(n, '\0');
    for (std::size_t i = 0; i < n; ++i) a[i] = static_cast<char>(i * 37 + n);
    std::string b = a;
    REQUIRE(kv::detail::same_key(a, b));
    for (std::size_t i = 0; i < n; ++i) {
      b[i] = static_cast<char>(b[i] ^ 0x80);
      REQUIRE_FALSE(kv::detail::same_key(a, b));
      REQUIRE_FALSE(kv::detail::same_key(b, a));
      b[i] = a[i];
    }
    REQUIRE_FALSE(kv::detail::same_key(a, a + 'x'));
    if (n > 0) REQUIRE_FALSE(kv::detail::same_key(a, std::string_view(a).substr(1)));
  }
}

TEST_CASE("flat_map prefetch of present, missing and empty keys, on an empty and a grown table, changes nothing") {
  kv::flat_map<int> map;
  std::vector<std::string> keys = {"", "a", std::string("a\0", 2), "missing", std::string(40, 'k')};
  for (int i = 0; i < 100; ++i) keys.push_back("key:" + std::to_string(i));  // more than one group of 16
  const std::vector<std::string_view> views(keys.begin(), keys.end());
  map.prefetch(views);  // no slot array yet: must not read one
  map.prefetch({});
  CHECK(map.size() == 0);
  CHECK(map.capacity() == 0);
  for (std::size_t i = 1; i < keys.size(); i += 2) *map.try_emplace(keys[i]).first = static_cast<int>(i);
  const std::size_t capacity = map.capacity();
  map.prefetch(views);
  CHECK(map.size() == keys.size() / 2);
  CHECK(map.capacity() == capacity);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const int* v = map.find(keys[i]);
    if (i % 2 == 1) {
      REQUIRE(v != nullptr);
      CHECK(*v == static_cast<int>(i));
    } else {
      CHECK(v == nullptr);
    }
  }
}

TEST_CASE("store prefetch before a batch of lookups leaves values, expiries and the count as they were") {
  kv::store s;
  s.upsert("a", "1");
  kv::entry& b = s.upsert("b", "2");
  s.expire("b", b, kv::now_ms() - 1);  // due: the next find erases it, a prefetch must not
  const std::vector<std::string_view> keys = {"a", "b", "c"};
  s.prefetch(keys);
  CHECK(s.size() == 2);
  CHECK(s.pending_expiries() == 1);
  REQUIRE(s.find("a") != nullptr);
  CHECK(s.find("a")->value == "1");
  CHECK(s.find("b") == nullptr);
  CHECK(s.find("c") == nullptr);
  CHECK(s.size() == 1);
}

TEST_CASE("store: upsert inserts, overwrites in place, and erase reports whether a live key was there") {
  kv::store s;
  kv::entry& e = s.upsert("k", "one");
  CHECK(s.size() == 1);
  kv::entry& again = s.upsert("k", "two");
  CHECK(&again == &e);
  REQUIRE(s.find("k") != nullptr);
  CHECK(s.find("k")->value == "two");
  CHECK(s.size() == 1);
  CHECK(s.erase("k"));
  CHECK_FALSE(s.erase("k"));
  CHECK(s.find("k") == nullptr);
  CHECK(s.size() == 0);
}

TEST_CASE("store keeps a 1 MiB value byte for byte, and a shorter value replaces it") {
  kv::store s;
  std::string big(1 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  s.upsert("big", big);
  REQUIRE(s.find("big") != nullptr);
  CHECK(s.find("big")->value == big);
  s.upsert("big", "x");
  CHECK(s.find("big")->value == "x");
}

TEST_CASE("store: a key past its deadline reads as missing and is erased when touched") {
  kv::store s;
  kv::entry& e = s.upsert("gone", "v");
  s.expire("gone", e, kv::now_ms() - 1);
  kv::entry& f = s.upsert("kept", "v");
  s.expire("kept", f, kv::now_ms() + 60'000);
  CHECK(s.size() == 2);  // DBSIZE counts the expired key until it is touched or swept
  CHECK(s.find("gone") == nullptr);
  CHECK(s.size() == 1);
  REQUIRE(s.find("kept") != nullptr);
  CHECK(s.find("kept")->expire_at == f.expire_at);

  kv::entry& g = s.upsert("dead", "v");
  s.expire("dead", g, kv::now_ms() - 1);
  CHECK_FALSE(s.erase("dead"));  // DEL of an expired key counts 0, as in Redis
  CHECK(s.size() == 1);
}

TEST_CASE("store sweep erases due keys only, skips stale heap entries, and honours its budget") {
  kv::store s;
  const std::int64_t t = kv::now_ms() + 1'000'000;  // deadlines well in the future: no lazy expiry
  for (int i = 0; i < 100; ++i) {
    const std::string k = "k" + std::to_string(i);
    kv::entry& e = s.upsert(k, "v");
    s.expire(k, e, t + i);
  }
  // Stale heap entries: k0 deleted, k1 given a later deadline, k2's deadline removed (PERSIST-like).
  s.erase("k0");
  s.expire("k1", *s.find("k1"), t + 1000);
  s.expire("k2", *s.find("k2"), 0);
  CHECK(s.pending_expiries() == 101);

  CHECK(s.sweep(t - 1) == 0);       // nothing due yet
  CHECK(s.sweep(t + 9, 5) == 2);    // 5 heap entries: k0 (gone), k1 and k2 (stale), k3, k4
  CHECK(s.find("k3") == nullptr);
  CHECK(s.find("k5") != nullptr);
  CHECK(s.sweep(t + 9) == 5);       // k5 .. k9
  CHECK(s.find("k9") == nullptr);
  CHECK(s.find("k10") != nullptr);
  CHECK(s.find("k1") != nullptr);   // its old deadline was stale
  CHECK(s.find("k2") != nullptr);   // no deadline any more
  CHECK(s.sweep(t + 2000) == 91);   // k10 .. k99 and k1
  CHECK(s.size() == 1);
  CHECK(s.pending_expiries() == 0);
}

TEST_CASE("store sweep rebuilds a heap of mostly stale entries from the live keys") {
  kv::store s;
  const std::int64_t t = kv::now_ms() + 1'000'000;
  kv::entry& e = s.upsert("k", "v");
  for (int i = 0; i < 3000; ++i) s.expire("k", e, t + i);  // 2999 stale entries
  CHECK(s.pending_expiries() == 3000);
  CHECK(s.sweep(t - 1) == 0);
  CHECK(s.pending_expiries() == 1);
  CHECK(s.sweep(t + 2999) == 1);
  CHECK(s.size() == 0);
}

TEST_CASE("store clear empties the key space and the expiry heap") {
  kv::store s;
  for (int i = 0; i < 5000; ++i) {
    const std::string k = std::to_string(i);
    s.expire(k, s.upsert(k, k), kv::now_ms() + 60'000);
  }
  CHECK(s.size() == 5000);
  s.clear();
  CHECK(s.size() == 0);
  CHECK(s.pending_expiries() == 0);
  CHECK(s.find("1") == nullptr);
  s.upsert("1", "again");
  CHECK(s.find("1")->value == "again");
}
