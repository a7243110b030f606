// codec: round trips of every supported type, the pinned byte layout, every decode_error
// path with its message, encode errors, and random / mutated input that must either
// decode or throw decode_error (run under ASan+UBSan in the sanitizer build).
#include <doctest/doctest.h>

#include <corio/ipc/codec.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

using corio::decode;
using corio::decode_error;
using corio::encode;
using corio::encode_error;

namespace {

struct point {
  std::int32_t x = 0;
  std::int32_t y = 0;
  bool operator==(const point&) const = default;
};

// A user type through the customization point, holding a bool that must be checked.
struct person {
  std::string name;
  std::uint16_t age = 0;
  bool admin = false;
  std::vector<point> path;
  std::optional<std::string> note;
  template <class Ar>
  void corio_fields(Ar& ar) {
    ar(name, age, admin, path, note);
  }
  bool operator==(const person&) const = default;
};

// Recursive: corrupt input could nest it without bound but for codec_max_depth.
struct tree {
  std::int8_t value = 0;
  std::vector<tree> kids;
  template <class Ar>
  void corio_fields(Ar& ar) {
    ar(value, kids);
  }
  bool operator==(const tree&) const = default;
};

// Copying throws, which leaves a variant holding it valueless.
struct throws_on_copy {
  int v = 0;
  throws_on_copy() = default;
  throws_on_copy(const throws_on_copy&) { throw std::runtime_error("no copy"); }
  throws_on_copy& operator=(const throws_on_copy&) = default;
  template <class Ar>
  void corio_fields(Ar& ar) {
    ar(v);
  }
};

struct empty_fields {
  template <class Ar>
  void corio_fields(Ar&) {}
};

enum class color : std::uint8_t { red = 1, green = 2 };

std::vector<std::byte> bytes(std::initializer_list<int> xs) {
  std::vector<std::byte> out;
  for (int x : xs) out.push_back(static_cast<std::byte>(x));
  return out;
}

template <class T>
T round_trip(const T& v) {
  return decode<T>(encode(v));
}

template <class T>
std::string decode_message(const std::vector<std::byte>& in) {
  try {
    (void)decode<T>(in);
  } catch (const decode_error& e) {
    return e.what();
  }
  return "no error";
}

using complex1 = std::map<std::string, std::vector<std::optional<std::variant<int, std::string, point>>>>;
using complex2 = std::tuple<person, std::unordered_map<std::uint32_t, std::set<std::string>>, bool>;
using complex3 = std::vector<std::pair<tree, std::array<bool, 3>>>;

complex1 sample1() {
  return {{"a", {std::nullopt, 7, std::string("seven"), point{1, 2}}}, {"", {}}};
}
complex2 sample2() {
  return {person{"ann", 41, true, {{1, 2}, {3, 4}}, "hi"}, {{5, {"x", "yy"}}, {6, {}}}, false};
}
complex3 sample3() {
  return {{tree{1, {tree{2, {}}, tree{3, {tree{4, {}}}}}}, {true, false, true}}};
}

}  // namespace

TEST_CASE("trivially copyable values round trip byte for byte") {
  CHECK(round_trip(std::int32_t{-5}) == -5);
  CHECK(round_trip(std::uint64_t{0xdeadbeefcafeULL}) == 0xdeadbeefcafeULL);
  CHECK(round_trip(3.25) == 3.25);
  CHECK(round_trip('q') == 'q');
  CHECK(round_trip(point{7, -8}) == point{7, -8});
  CHECK(round_trip(color::green) == color::green);
  CHECK(round_trip(true) == true);
  CHECK(round_trip(false) == false);
  CHECK(encode(point{1, 2}).size() == sizeof(point));
}

TEST_CASE("standard library types round trip, nested") {
  CHECK(round_trip(std::string()) == "");
  CHECK(round_trip(std::string("hello\0world", 11)) == std::string("hello\0world", 11));
  CHECK(round_trip(std::vector<int>{1, 2, 3}) == std::vector<int>{1, 2, 3});
  CHECK(round_trip(std::vector<bool>{true, false, true}) == std::vector<bool>{true, false, true});
  CHECK(round_trip(std::vector<std::string>{"a", "", "ccc"}) ==
        std::vector<std::string>{"a", "", "ccc"});
  CHECK(round_trip(std::pair<int, std::string>{4, "four"}) == std::pair<int, std::string>{4, "four"});
  CHECK(round_trip(std::tuple<>{}) == std::tuple<>{});
  CHECK(round_trip(std::tuple<int, bool, std::string>{1, true, "x"}) ==
        std::tuple<int, bool, std::string>{1, true, "x"});
  CHECK(round_trip(std::optional<int>{}) == std::nullopt);
  CHECK(round_trip(std::optional<int>{9}) == 9);
  CHECK(round_trip(std::variant<int, std::string>{"s"}) == std::variant<int, std::string>{"s"});
  CHECK(round_trip(std::variant<int, std::string>{3}) == std::variant<int, std::string>{3});
  CHECK(round_trip(std::array<bool, 2>{true, false}) == std::array<bool, 2>{true, false});
  CHECK(round_trip(std::array<std::string, 2>{"p", "q"}) == std::array<std::string, 2>{"p", "q"});
  CHECK(round_trip(std::map<int, std::string>{{1, "a"}, {2, "b"}}) ==
        std::map<int, std::string>{{1, "a"}, {2, "b"}});
  CHECK(round_trip(std::unordered_map<std::string, int>{{"a", 1}, {"b", 2}}) ==
        std::unordered_map<std::string, int>{{"a", 1}, {"b", 2}});
  CHECK(round_trip(std::set<int>{3, 1}) == std::set<int>{1, 3});
  CHECK(round_trip(std::unordered_set<std::string>{"k"}) == std::unordered_set<std::string>{"k"});
  CHECK(round_trip(sample1()) == sample1());
  CHECK(round_trip(sample2()) == sample2());
  CHECK(round_trip(sample3()) == sample3());
}

TEST_CASE("user types round trip through corio_fields, including recursive ones") {
  const person p{"bob", 30, false, {{0, 1}}, std::nullopt};
  CHECK(round_trip(p) == p);
  const tree t{1, {tree{2, {}}, tree{3, {tree{4, {}}}}}};
  CHECK(round_trip(t) == t);
  CHECK(corio::codec<person>::decode(encode(p)) == p);
}

TEST_CASE("encode appends to the buffer and decode into an existing value reuses it") {
  std::vector<std::byte> out = bytes({0xaa});
  encode(std::uint16_t{0x0102}, out);
  CHECK(out == bytes({0xaa, 0x02, 0x01}));
  std::vector<int> v{9, 9, 9, 9};
  corio::decode(std::span<const std::byte>(encode(std::vector<int>{5})), v);
  CHECK(v == std::vector<int>{5});
}

TEST_CASE("the byte layout is pinned") {
  static_assert(std::endian::native == std::endian::little, "the pinned layout is little-endian");
  CHECK(encode(std::uint32_t{0x04030201}) == bytes({1, 2, 3, 4}));
  CHECK(encode(std::string("ab")) == bytes({2, 0, 0, 0, 0, 0, 0, 0, 'a', 'b'}));
  CHECK(encode(std::optional<std::uint8_t>{7}) == bytes({1, 7}));
  CHECK(encode(std::optional<std::uint8_t>{}) == bytes({0}));
  CHECK(encode(std::variant<std::uint8_t, bool>{true}) == bytes({1, 0, 0, 0, 1}));
  CHECK(encode(std::vector<std::uint16_t>{1, 2}) == bytes({2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 0}));
  CHECK(encode(std::map<std::uint8_t, bool>{{5, true}}) == bytes({1, 0, 0, 0, 0, 0, 0, 0, 5, 1}));
  CHECK(encode(std::pair<std::uint8_t, std::uint8_t>{8, 9}) == bytes({8, 9}));
}

TEST_CASE("every decode error names what was expected and the offset") {
  CHECK(decode_message<std::uint32_t>(bytes({1, 2})) ==
        "decode a 4-byte value: needs 4 bytes, 2 left at offset 0");
  CHECK(decode_message<std::uint8_t>(bytes({1, 2, 3})) ==
        "decode: 2 trailing bytes after the value at offset 1");
  CHECK(decode_message<bool>(bytes({2})) == "decode bool: byte 2 is not 0 or 1 at offset 0");
  CHECK(decode_message<bool>(bytes({})) == "decode bool: needs 1 bytes, 0 left at offset 0");
  CHECK(decode_message<std::string>(bytes({1, 0, 0})) ==
        "decode std::string: needs 8 bytes, 3 left at offset 0");
  // Length 4,000,000,000 with 12 bytes after it: refused before any allocation.
  CHECK(decode_message<std::pair<std::uint32_t, std::string>>(
            bytes({0, 0, 0, 0, 0x00, 0x28, 0x6b, 0xee, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                   11, 12})) ==
        "decode std::string: length 4000000000 exceeds the 12 bytes left at offset 4");
  CHECK(decode_message<std::vector<std::uint32_t>>(bytes({3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4})) ==
        "decode std::vector: 3 elements of at least 4 bytes exceed the 4 bytes left at offset 0");
  CHECK(decode_message<std::vector<std::string>>(
            bytes({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})) ==
        "decode std::vector: 18446744073709551615 elements of at least 8 bytes exceed the 0 "
        "bytes left at offset 0");
  CHECK(decode_message<std::optional<int>>(bytes({3})) ==
        "decode std::optional: flag 3 is not 0 or 1 at offset 0");
  CHECK(decode_message<std::variant<int, bool>>(bytes({2, 0, 0, 0, 1})) ==
        "decode std::variant: index 2 out of range for 2 alternatives at offset 0");
  CHECK(decode_message<std::map<std::uint8_t, std::uint8_t>>(
            bytes({2, 0, 0, 0, 0, 0, 0, 0, 5, 1, 5, 2})) ==
        "decode map: duplicate key at offset 10");
  CHECK(decode_message<std::set<std::uint8_t>>(bytes({2, 0, 0, 0, 0, 0, 0, 0, 4, 4})) ==
        "decode set: duplicate key at offset 9");
  CHECK(decode_message<person>(bytes({0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 7})) ==
        "decode bool: byte 7 is not 0 or 1 at offset 10");
}

TEST_CASE("recursive user types deeper than codec_max_depth are refused") {
  // Each level: value byte, then a count of one kid.
  std::vector<std::byte> in;
  for (std::size_t i = 0; i < corio::codec_max_depth + 10; ++i) {
    in.push_back(std::byte{0});
    const std::uint64_t one = 1;
    const auto* p = reinterpret_cast<const std::byte*>(&one);
    in.insert(in.end(), p, p + sizeof one);
  }
  CHECK(decode_message<tree>(in) == "decode corio_fields: nesting deeper than 256 at offset 2304");
  tree t;
  for (int i = 0; i < 200; ++i) t = tree{1, {t}};
  CHECK(round_trip(t) == t);
}

TEST_CASE("encode errors throw in the caller and leave the buffer unchanged") {
  std::vector<std::byte> out = bytes({1, 2});
  std::variant<int, throws_on_copy> w = 1;
  const throws_on_copy src;
  CHECK_THROWS_AS(w.emplace<1>(src), std::runtime_error);
  REQUIRE(w.valueless_by_exception());
  try {
    encode(std::pair<int, const std::variant<int, throws_on_copy>&>{5, w}, out);
    FAIL("no encode_error");
  } catch (const encode_error& e) {
    CHECK(std::string(e.what()) == "encode std::variant: the variant is valueless by exception");
  }
  CHECK(out == bytes({1, 2}));
  try {
    (void)encode(empty_fields{});
    FAIL("no encode_error");
  } catch (const encode_error& e) {
    CHECK(std::string(e.what()) == "encode: a type with corio_fields wrote no bytes; give it a field");
  }
}

namespace {

// Decodes as T; anything but a value or decode_error fails the test (ASan/UBSan catch the
// rest). Returns whether it decoded.
template <class T>
bool survives(std::span<const std::byte> in) {
  try {
    (void)decode<T>(in);
    return true;
  } catch (const decode_error&) {
    return false;
  }
}

}  // namespace

// Decodes `in` as the kind-th of the fuzzed types.
bool survives_as(int kind, std::span<const std::byte> in) {
  switch (kind) {
    case 0: return survives<complex1>(in);
    case 1: return survives<complex2>(in);
    case 2: return survives<complex3>(in);
    case 3: return survives<tree>(in);
    default: return survives<std::vector<std::string>>(in);
  }
}

TEST_CASE("random and mutated input either decodes or throws decode_error") {
  std::mt19937_64 rng(12345);
  const tree deep{1, {tree{2, {tree{3, {}}}}, tree{4, {}}}};
  const std::vector<std::vector<std::byte>> seeds = {
      encode(sample1()), encode(sample2()), encode(sample3()), encode(deep),
      encode(std::vector<std::string>{"one", "", "three"})};
  long decoded = 0, refused = 0, decodes = 0;
  for (int i = 0; i < 200000; ++i) {
    std::vector<std::byte> in;
    if (i % 8 == 0) {
      // Random bytes, biased to small values so that lengths and flags are often plausible.
      in.resize(rng() % 64);
      for (auto& b : in) b = static_cast<std::byte>(rng() % 4 == 0 ? rng() : rng() % 3);
      for (int kind = 0; kind < 5; ++kind, ++decodes) ++(survives_as(kind, in) ? decoded : refused);
      continue;
    }
    const int kind = static_cast<int>(rng() % seeds.size());
    in = seeds[static_cast<std::size_t>(kind)];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 4) {
        case 0:  // overwrite a byte
          if (!in.empty()) in[rng() % in.size()] = static_cast<std::byte>(rng());
          break;
        case 1:  // truncate
          if (!in.empty()) in.resize(rng() % in.size());
          break;
        case 2:  // extend
          in.push_back(static_cast<std::byte>(rng()));
          break;
        default:  // flip a low bit: lengths off by one, flags 0 <-> 1
          if (!in.empty()) in[rng() % in.size()] ^= std::byte{1};
          break;
      }
    }
    ++decodes;
    ++(survives_as(kind, in) ? decoded : refused);
  }
  MESSAGE("decoded " << decoded << ", refused " << refused);
  CHECK(decoded > 1000);
  CHECK(refused > 1000);
  CHECK(decoded + refused == decodes);
  CHECK(decodes == 25000 * 5 + 175000);
}
