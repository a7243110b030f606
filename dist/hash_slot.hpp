#pragma once
// Redis Cluster's key -> hash slot function, and which arguments of a command are keys.
//
// A cluster splits the key space into 16384 hash slots; a key's slot is
// CRC16(key) mod 16384, with CRC16 the CCITT/XMODEM variant (polynomial 0x1021, initial
// value 0, no reflection: "123456789" -> 0x31C3). The hash tag rule (Redis cluster spec):
// when the key holds a '{' and, after it, a '}' with at least one character between
// them, only the characters between the first '{' and the first '}' after it are hashed.
// So "{user1}:a" and "{user1}:b" share a slot; "foo{}{bar}" hashes whole ("{}" is empty);
// "foo{{bar}}" hashes "{bar".
//
// command_slot() says where a command must go: the one slot of all its keys, nothing for a
// command without keys (PING, INFO, CONFIG, ...: any node serves it), or cross_slot_error
// when its keys lie in different slots (a cluster refuses them with CROSSSLOT; the client
// says so before sending). Keys are found by a table of the commands that place them
// elsewhere than their first argument (EVAL's numkeys, XREAD's STREAMS, MSET's pairs, ...);
// any other command with arguments has its key first.

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace corio::redis {

inline constexpr int cluster_slots = 16384;

// CRC16/XMODEM of `bytes`.
std::uint16_t crc16(std::string_view bytes) noexcept;
// The hash slot of `key`, hash tags honoured: 0 .. 16383.
int key_slot(std::string_view key) noexcept;
// The part of `key` that is hashed (the tag's inside, or the whole key).
std::string_view hash_tag(std::string_view key) noexcept;

// The keys of the command argv[0] argv[1] ...; empty for a command without keys.
// Throws std::invalid_argument for a malformed EVAL numkeys or XREAD without STREAMS.
std::vector<std::string_view> command_keys(std::span<const std::string_view> argv);
// The slot of the command's keys; nothing without keys; cross_slot_error when they differ.
std::optional<int> command_slot(std::span<const std::string_view> argv);

}  // namespace corio::redis
