#include "hash_slot.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <stdexcept>
#include <string>

#include "redis_error.hpp"

namespace corio::redis {

namespace {

// The table of the byte-at-a-time CRC: entry b is the CRC of the byte b followed by 16
// zero bits, i.e. b shifted through the polynomial eight times.
constexpr std::array<std::uint16_t, 256> crc16_table = [] {
  std::array<std::uint16_t, 256> t{};
  for (unsigned b = 0; b < 256; ++b) {
    auto c = static_cast<std::uint16_t>(b << 8);
    for (int bit = 0; bit < 8; ++bit) c = static_cast<std::uint16_t>((c & 0x8000) ? (c << 1) ^ 0x1021 : c << 1);
    t[b] = c;
  }
  return t;
}();
static_assert(crc16_table[1] == 0x1021 && crc16_table[255] == 0x1EF0, "CRC16/XMODEM table");

bool is(std::string_view name, std::string_view upper) {
  return name.size() == upper.size() &&
         std::equal(name.begin(), name.end(), upper.begin(),
                    [](char a, char b) { return std::toupper(static_cast<unsigned char>(a)) == b; });
}

bool any_of(std::string_view name, std::initializer_list<std::string_view> names) {
  return std::any_of(names.begin(), names.end(), [&](std::string_view n) { return is(name, n); });
}

}  // namespace

std::uint16_t crc16(std::string_view bytes) noexcept {
  std::uint16_t crc = 0;
  for (const char ch : bytes)
    crc = static_cast<std::uint16_t>((crc << 8) ^ crc16_table[((crc >> 8) ^ static_cast<unsigned char>(ch)) & 0xFF]);
  return crc;
}

std::string_view hash_tag(std::string_view key) noexcept {
  const std::size_t open = key.find('{');
  if (open == std::string_view::npos) return key;
  const std::size_t close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

int key_slot(std::string_view key) noexcept { return crc16(hash_tag(key)) & (cluster_slots - 1); }

std::vector<std::string_view> command_keys(std::span<const std::string_view> argv) {
  if (argv.size() < 2) return {};
  const std::string_view name = argv[0];
  const auto from = [&](std::size_t first, std::size_t end, std::size_t step = 1) {
    std::vector<std::string_view> keys;
    for (std::size_t i = first; i < end && i < argv.size(); i += step) keys.push_back(argv[i]);
    return keys;
  };
  if (any_of(name, {"PING", "ECHO", "INFO", "CONFIG", "CLIENT", "CLUSTER", "COMMAND", "AUTH", "HELLO", "SELECT", "TIME",
                    "DBSIZE", "KEYS", "SCAN", "SCRIPT", "FUNCTION", "ACL", "SLOWLOG", "LATENCY", "FLUSHALL", "FLUSHDB",
                    "WAIT", "READONLY", "READWRITE", "ASKING", "QUIT", "RESET", "PUBLISH", "SUBSCRIBE", "PSUBSCRIBE",
                    "MULTI", "EXEC", "DISCARD", "UNWATCH", "DEBUG", "SHUTDOWN", "SAVE", "BGSAVE", "BGREWRITEAOF",
                    "LASTSAVE", "ROLE", "MONITOR", "RANDOMKEY", "SWAPDB", "MODULE", "FAILOVER", "REPLICAOF"}))
    return {};
  if (any_of(name, {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})) {
    std::size_t n = 0;
    const std::string_view count = argv.size() > 2 ? argv[2] : std::string_view();
    const auto r = std::from_chars(count.data(), count.data() + count.size(), n);
    if (r.ec != std::errc{} || r.ptr != count.data() + count.size() || n > argv.size() - 3)
      throw std::invalid_argument("redis: " + std::string(name.substr(0, 16)) +
                                  ": numkeys is not a number of keys that follow it");
    return from(3, 3 + n);
  }
  if (any_of(name, {"XREAD", "XREADGROUP"})) {
    // XREADGROUP GROUP group consumer ...: a group or consumer may be named "streams".
    const std::size_t options = is(name, "XREADGROUP") ? std::min<std::size_t>(4, argv.size()) : 1;
    const auto streams =
        std::find_if(argv.begin() + options, argv.end(), [](std::string_view a) { return is(a, "STREAMS"); });
    const std::size_t first = static_cast<std::size_t>(streams - argv.begin()) + 1;
    if (streams == argv.end() || (argv.size() - first) % 2 != 0 || argv.size() == first)
      throw std::invalid_argument("redis: " + std::string(name) + " without STREAMS key ... id ...");
    return from(first, first + (argv.size() - first) / 2);
  }
  if (any_of(name, {"MSET", "MSETNX"})) return from(1, argv.size(), 2);
  if (any_of(name, {"MGET", "DEL", "UNLINK", "EXISTS", "TOUCH", "WATCH", "SUNION", "SINTER", "SDIFF", "PFCOUNT",
                    "PFMERGE", "SUNIONSTORE", "SINTERSTORE", "SDIFFSTORE"}))
    return from(1, argv.size());
  if (any_of(name, {"BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"})) return from(1, argv.size() - 1);
  if (any_of(name, {"RENAME", "RENAMENX", "SMOVE", "LMOVE", "BLMOVE", "RPOPLPUSH", "BRPOPLPUSH", "COPY"}))
    return from(1, 3);
  if (any_of(name, {"XGROUP", "XINFO", "OBJECT", "MEMORY"})) return from(2, 3);
  return from(1, 2);
}

std::optional<int> command_slot(std::span<const std::string_view> argv) {
  const std::vector<std::string_view> keys = command_keys(argv);
  if (keys.empty()) return std::nullopt;
  const int slot = key_slot(keys[0]);
  for (std::size_t i = 1; i < keys.size(); ++i) {
    const int other = key_slot(keys[i]);
    if (other != slot)
      throw cross_slot_error("redis cluster: " + std::string(argv[0].substr(0, 32)) +
                             ": its keys lie in different hash slots (key 1 in slot " + std::to_string(slot) +
                             ", key " + std::to_string(i + 1) + " in slot " + std::to_string(other) +
                             "); the keys of one command or script must share a hash tag, as in {name}:a and "
                             "{name}:b");
  }
  return slot;
}

}  // namespace corio::redis
