#pragma once
// corio::codec<T>: the byte format that pipes, queues and the process pool use to move
// values between processes of ONE program on ONE host (docs/codec.md).
//
// Contract
// - encode(v, out) appends v's bytes to out; encode(v) returns them. A value that cannot
//   be encoded (a valueless std::variant, a user type that writes no bytes) throws
//   encode_error right there, in the caller; `out` is then left as it was.
// - decode<T>(bytes) rebuilds a T from exactly those bytes. Truncated input, trailing
//   bytes, an impossible length, a variant index out of range, an optional flag or bool
//   byte other than 0/1, a duplicate map key and nesting deeper than codec_max_depth throw
//   decode_error, whose message names what was expected and the offset. Corrupt input is
//   never undefined behaviour and never makes decode allocate more than the input could
//   hold: every length is checked against the bytes left before anything is reserved.
// - Format: host byte order and host sizes (same host, same build), no padding, no tags:
//     trivially copyable T      sizeof(T) raw bytes (memcpy)
//     bool                      1 byte, 0 or 1
//     std::string               u64 length, then the chars
//     std::vector<T>            u64 count, then each element (one memcpy when T is
//                               trivially copyable and not bool)
//     std::array<T, N>          the N elements
//     std::pair, std::tuple     the members in order
//     std::optional<T>          u8 flag 0/1, then the value when 1
//     std::variant<Ts...>       u32 index, then the alternative
//     std::map, std::unordered_map, std::set, std::unordered_set
//                               u64 count, then key (and value) per entry, in iteration
//                               order
//     user type                 its corio_fields, in order
// - Pointers and member pointers are refused at compile time: an address means nothing
//   in another process. A trivially copyable struct is copied byte for byte, so one that
//   holds a pointer, a bool or an enum that corrupt bytes could set out of range should
//   define corio_fields instead (then its fields are checked one by one).
// - Customization point, the only one: a member template
//       template <class Ar> void corio_fields(Ar& ar) { ar(x, y, name); }
//   listing the fields to encode, in order. It takes precedence over the memcpy path.
//   Encoding calls it on a const object through const_cast, so it must only pass fields
//   to `ar`. Decoding needs T (and every element, key and alternative type) to be default
//   constructible: it builds a T{} and decodes into its fields.
// - Unsupported types fail at compile time with a static_assert naming the rule.

#include "detail/codec_io.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace corio {

namespace detail {

template <class T, template <class...> class Tmpl>
inline constexpr bool is_spec_of = false;
template <template <class...> class Tmpl, class... As>
inline constexpr bool is_spec_of<Tmpl<As...>, Tmpl> = true;

template <class T>
inline constexpr bool is_std_array = false;
template <class T, std::size_t N>
inline constexpr bool is_std_array<std::array<T, N>> = true;

template <class T>
inline constexpr bool is_codec_map =
    is_spec_of<T, std::map> || is_spec_of<T, std::unordered_map>;
template <class T>
inline constexpr bool is_codec_set =
    is_spec_of<T, std::set> || is_spec_of<T, std::unordered_set>;

// An archive no corio_fields can do anything useful with: only used to detect the member.
struct codec_probe {
  template <class... Fs>
  void operator()(Fs&...) {}
};
template <class T>
concept has_corio_fields = requires(T& t, codec_probe& p) { t.corio_fields(p); };

template <class T>
inline constexpr bool is_codec_std_template =
    is_spec_of<T, std::basic_string> || is_spec_of<T, std::vector> || is_std_array<T> ||
    is_spec_of<T, std::pair> || is_spec_of<T, std::tuple> || is_spec_of<T, std::optional> ||
    is_spec_of<T, std::variant> || is_codec_map<T> || is_codec_set<T>;

// Encoded byte for byte. std:: templates that happen to be trivially copyable
// (std::optional<int>, std::array<bool, 2>) are excluded: their members need checking.
template <class T>
inline constexpr bool codec_memcpy = std::is_trivially_copyable_v<T> && !std::is_same_v<T, bool> &&
                                     !std::is_pointer_v<T> && !std::is_member_pointer_v<T> &&
                                     !has_corio_fields<T> && !is_codec_std_template<T>;

template <class>
inline constexpr bool codec_false = false;

// Flat types: the encoding of a std::string, or of a std::vector of elements copied byte
// for byte, is exactly its element count (u64) followed by the bytes of its data, which
// codec_flat_body gives in place. A caller that stores the encoding somewhere (the
// queue's value arena) can then copy it there once, without building it first.
template <class T>
concept codec_flat = std::is_same_v<T, std::string> ||
                     (is_spec_of<T, std::vector> && codec_memcpy<typename T::value_type>);
template <codec_flat T>
std::span<const std::byte> codec_flat_body(const T& v) noexcept {
  return std::as_bytes(std::span(v.data(), v.size()));
}

// What one map or set entry encodes as, for the count check.
template <class T>
struct codec_entry {
  using type = typename T::key_type;
};
template <class T>
  requires is_codec_map<T>
struct codec_entry<T> {
  using type = std::pair<typename T::key_type, typename T::mapped_type>;
};

// The fewest bytes any value of T encodes to; container counts are checked against it.
// User types count as one byte: encode refuses one that writes none.
template <class T>
constexpr std::size_t codec_min_size() {
  if constexpr (is_std_array<T>)
    return std::tuple_size_v<T> * codec_min_size<typename T::value_type>();
  else if constexpr (is_spec_of<T, std::pair>)
    return codec_min_size<typename T::first_type>() + codec_min_size<typename T::second_type>();
  else if constexpr (is_spec_of<T, std::tuple>)
    return []<std::size_t... I>(std::index_sequence<I...>) {
      return (std::size_t{0} + ... + codec_min_size<std::tuple_element_t<I, T>>());
    }(std::make_index_sequence<std::tuple_size_v<T>>{});
  else if constexpr (is_spec_of<T, std::variant>)
    return 4;
  else if constexpr (is_spec_of<T, std::basic_string> || is_spec_of<T, std::vector> ||
                     is_codec_map<T> || is_codec_set<T>)
    return 8;
  else if constexpr (codec_memcpy<T>)
    return sizeof(T);
  else
    return 1;  // bool, optional flag, user types
}

template <class T>
std::size_t checked_count(codec_reader& r, std::string_view what) {
  constexpr std::size_t min = codec_min_size<T>();
  static_assert(min > 0,
                "corio::codec: container elements must encode to at least one byte "
                "(std::tuple<> and std::array<T, 0> cannot be elements)");
  return r.count(what, min);
}

template <class T>
void encode_value(codec_writer& w, const T& v);
template <class T>
void decode_value(codec_reader& r, T& v);

struct codec_field_encoder {
  codec_writer& w;
  template <class... Fs>
  void operator()(Fs&... fs) {
    (encode_value(w, static_cast<const Fs&>(fs)), ...);
  }
};
struct codec_field_decoder {
  codec_reader& r;
  template <class... Fs>
  void operator()(Fs&... fs) {
    (decode_value(r, fs), ...);
  }
};

template <class T>
void encode_value(codec_writer& w, const T& v) {
  if constexpr (has_corio_fields<T>) {
    const auto before = w.size();
    codec_field_encoder ar{w};
    const_cast<T&>(v).corio_fields(ar);
    if (w.size() == before)
      throw encode_error("encode: a type with corio_fields wrote no bytes; give it a field");
  } else if constexpr (std::is_same_v<T, bool>) {
    w.u8(v ? 1 : 0);
  } else if constexpr (std::is_same_v<T, std::string>) {
    w.u64(v.size());
    w.bytes(v.data(), v.size());
  } else if constexpr (is_spec_of<T, std::vector>) {
    w.u64(v.size());
    if constexpr (codec_memcpy<typename T::value_type>)
      w.bytes(v.data(), v.size() * sizeof(typename T::value_type));
    else
      for (const auto& e : v) encode_value(w, static_cast<const typename T::value_type&>(e));
  } else if constexpr (is_std_array<T>) {
    for (const auto& e : v) encode_value(w, e);
  } else if constexpr (is_spec_of<T, std::pair>) {
    encode_value(w, v.first);
    encode_value(w, v.second);
  } else if constexpr (is_spec_of<T, std::tuple>) {
    std::apply([&](const auto&... es) { (encode_value(w, es), ...); }, v);
  } else if constexpr (is_spec_of<T, std::optional>) {
    w.u8(v.has_value() ? 1 : 0);
    if (v) encode_value(w, *v);
  } else if constexpr (is_spec_of<T, std::variant>) {
    if (v.valueless_by_exception())
      throw encode_error("encode std::variant: the variant is valueless by exception");
    w.u32(static_cast<std::uint32_t>(v.index()));
    std::visit([&](const auto& alt) { encode_value(w, alt); }, v);
  } else if constexpr (is_codec_map<T>) {
    w.u64(v.size());
    for (const auto& [k, val] : v) {
      encode_value(w, k);
      encode_value(w, val);
    }
  } else if constexpr (is_codec_set<T>) {
    w.u64(v.size());
    for (const auto& k : v) encode_value(w, k);
  } else if constexpr (std::is_pointer_v<T> || std::is_member_pointer_v<T>) {
    static_assert(codec_false<T>,
                  "corio::codec: pointers are refused: an address is meaningless in another "
                  "process; send the pointed-to value instead");
  } else if constexpr (codec_memcpy<T>) {
    w.bytes(&v, sizeof(T));
  } else {
    static_assert(codec_false<T>,
                  "corio::codec: unsupported type; use a trivially copyable type, a supported "
                  "std:: type, or give it a member `template <class Ar> void "
                  "corio_fields(Ar& ar) { ar(field1, field2); }`");
  }
}

template <class T>
void decode_value(codec_reader& r, T& v) {
  static_assert(std::is_default_constructible_v<T> || is_std_array<T>,
                "corio::codec: decoding needs default-constructible types");
  if constexpr (has_corio_fields<T>) {
    r.enter("corio_fields");
    codec_field_decoder ar{r};
    v.corio_fields(ar);
    r.leave();
  } else if constexpr (std::is_same_v<T, bool>) {
    const std::size_t at = r.offset();
    const auto b = r.u8("bool");
    if (b > 1)
      r.fail("bool", "byte " + std::to_string(b) + " is not 0 or 1 at offset " + std::to_string(at));
    v = b == 1;
  } else if constexpr (std::is_same_v<T, std::string>) {
    // assign, not resize and copy: one pass over the bytes (a 1 MiB string decodes
    // without first being zero-filled).
    const auto in = r.take(checked_count<char>(r, "std::string"), "std::string");
    v.assign(reinterpret_cast<const char*>(in.data()), in.size());
  } else if constexpr (is_spec_of<T, std::vector>) {
    using E = typename T::value_type;
    const std::size_t n = checked_count<E>(r, "std::vector");
    if constexpr (std::is_same_v<E, std::byte> || std::is_same_v<E, char> || std::is_same_v<E, unsigned char>) {
      const auto in = r.take(n, "std::vector");  // as std::string: one pass, no zero fill
      v.assign(reinterpret_cast<const E*>(in.data()), reinterpret_cast<const E*>(in.data()) + n);
    } else if constexpr (codec_memcpy<E>) {
      v.resize(n);
      r.bytes(v.data(), n * sizeof(E), "std::vector");
    } else {
      v.clear();
      v.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        E e{};
        decode_value(r, e);
        v.push_back(std::move(e));
      }
    }
  } else if constexpr (is_std_array<T>) {
    for (auto& e : v) decode_value(r, e);
  } else if constexpr (is_spec_of<T, std::pair>) {
    decode_value(r, v.first);
    decode_value(r, v.second);
  } else if constexpr (is_spec_of<T, std::tuple>) {
    std::apply([&](auto&... es) { (decode_value(r, es), ...); }, v);
  } else if constexpr (is_spec_of<T, std::optional>) {
    const std::size_t at = r.offset();
    const auto flag = r.u8("std::optional");
    if (flag > 1)
      r.fail("std::optional",
             "flag " + std::to_string(flag) + " is not 0 or 1 at offset " + std::to_string(at));
    if (flag == 0) {
      v.reset();
    } else {
      decode_value(r, v.emplace());
    }
  } else if constexpr (is_spec_of<T, std::variant>) {
    const std::size_t at = r.offset();
    const auto index = r.u32("std::variant");
    constexpr std::size_t n = std::variant_size_v<T>;
    if (index >= n)
      r.fail("std::variant", "index " + std::to_string(index) + " out of range for " +
                                 std::to_string(n) + " alternatives at offset " +
                                 std::to_string(at));
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (void)((index == I ? (decode_value(r, v.template emplace<I>()), true) : false) || ...);
    }(std::make_index_sequence<n>{});
  } else if constexpr (is_codec_map<T> || is_codec_set<T>) {
    constexpr bool is_map = is_codec_map<T>;
    constexpr std::string_view what = is_map ? "map" : "set";
    using E = typename codec_entry<T>::type;
    const std::size_t n = checked_count<E>(r, what);
    v.clear();
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t at = r.offset();
      typename T::key_type k{};
      decode_value(r, k);
      bool inserted;
      if constexpr (is_map) {
        typename T::mapped_type m{};
        decode_value(r, m);
        inserted = v.emplace(std::move(k), std::move(m)).second;
      } else {
        inserted = v.insert(std::move(k)).second;
      }
      if (!inserted) r.fail(what, "duplicate key at offset " + std::to_string(at));
    }
  } else if constexpr (codec_memcpy<T>) {
    r.bytes(&v, sizeof(T), "a " + std::to_string(sizeof(T)) + "-byte value");
  } else {
    // encode_value<T> holds the static_assert that explains the refusal.
    static_assert(codec_false<T>, "corio::codec: unsupported type (see encode)");
  }
}

}  // namespace detail

// Appends v's encoding to out. Throws encode_error (out unchanged) when v cannot be sent.
template <class T>
void encode(const T& v, std::vector<std::byte>& out) {
  const auto before = out.size();
  detail::codec_writer w(out);
  try {
    detail::encode_value(w, v);
  } catch (...) {
    out.resize(before);
    throw;
  }
}

template <class T>
[[nodiscard]] std::vector<std::byte> encode(const T& v) {
  std::vector<std::byte> out;
  encode(v, out);
  return out;
}

// Decodes into an existing T (reusing its storage); throws decode_error.
template <class T>
void decode(std::span<const std::byte> in, T& out) {
  detail::codec_reader r(in);
  detail::decode_value(r, out);
  r.finish();
}

// Rebuilds a T from exactly `in`; throws decode_error on anything else.
template <class T>
[[nodiscard]] T decode(std::span<const std::byte> in) {
  T v{};
  decode(in, v);
  return v;
}

// The type-level face of the same functions, for generic code (pipe<T>, queue<T>).
template <class T>
struct codec {
  static void encode(const T& v, std::vector<std::byte>& out) { corio::encode(v, out); }
  [[nodiscard]] static T decode(std::span<const std::byte> in) { return corio::decode<T>(in); }
};

}  // namespace corio
