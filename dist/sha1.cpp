#include "detail/sha1.hpp"

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>

namespace corio::dist::detail {

namespace {

using block = std::array<unsigned char, 64>;

// One 512-bit block into the state (FIPS 180-4, 6.1.2): 80 rounds over a 16-word window.
void compress(std::array<std::uint32_t, 5>& h, const unsigned char* p) {
  std::uint32_t w[16];
  for (int i = 0; i < 16; ++i)
    w[i] = std::uint32_t{p[4 * i]} << 24 | std::uint32_t{p[4 * i + 1]} << 16 | std::uint32_t{p[4 * i + 2]} << 8 |
           std::uint32_t{p[4 * i + 3]};
  std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int t = 0; t < 80; ++t) {
    if (t >= 16) w[t & 15] = std::rotl(w[(t - 3) & 15] ^ w[(t - 8) & 15] ^ w[(t - 14) & 15] ^ w[t & 15], 1);
    std::uint32_t f, k;
    if (t < 20) {
      f = (b & c) | (~b & d);
      k = 0x5a827999;
    } else if (t < 40) {
      f = b ^ c ^ d;
      k = 0x6ed9eba1;
    } else if (t < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8f1bbcdc;
    } else {
      f = b ^ c ^ d;
      k = 0xca62c1d6;
    }
    const std::uint32_t next = std::rotl(a, 5) + f + e + k + w[t & 15];
    e = d;
    d = c;
    c = std::rotl(b, 30);
    b = a;
    a = next;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

}  // namespace

std::string sha1_hex(std::string_view data) {
  std::array<std::uint32_t, 5> h = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t left = data.size();
  for (; left >= 64; left -= 64, p += 64) compress(h, p);
  // The padding: 0x80, zeros, then the length in bits as a big-endian 64-bit number; one
  // block, or two when fewer than 9 bytes are free after the data.
  block tail{};
  if (left > 0) std::memcpy(tail.data(), p, left);
  tail[left] = 0x80;
  if (left >= 56) {
    compress(h, tail.data());
    tail.fill(0);
  }
  const std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
  for (int i = 0; i < 8; ++i) tail[63 - i] = static_cast<unsigned char>(bits >> (8 * i));
  compress(h, tail.data());

  static constexpr char hex[] = "0123456789abcdef";
  std::string out(40, '0');
  for (std::size_t i = 0; i < 40; ++i) out[i] = hex[(h[i / 8] >> (28 - 4 * (i % 8))) & 15];
  return out;
}

}  // namespace corio::dist::detail
