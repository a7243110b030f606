// Redis Cluster key hashing (dist/hash_slot.hpp): CRC16/XMODEM and the hash tag rules against
// the values of the Redis cluster spec and of CLUSTER KEYSLOT on a live 7.0 server (the
// live comparison over many keys is in cluster_test.cpp); which arguments of a command are
// its keys; keys of one command in different slots are cross_slot_error before sending.
#include <doctest/doctest.h>

#include <corio/dist/hash_slot.hpp>
#include <corio/dist/redis_error.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

using corio::redis::command_keys;
using corio::redis::command_slot;
using corio::redis::crc16;
using corio::redis::hash_tag;
using corio::redis::key_slot;
using sv = std::string_view;

namespace {

std::vector<sv> keys_of(std::vector<sv> argv) { return command_keys(argv); }

}  // namespace

TEST_CASE("crc16 is CRC16/XMODEM: the spec's check value for \"123456789\" is 0x31C3") {
  CHECK(crc16("123456789") == 0x31C3);
  CHECK(crc16("") == 0);
  CHECK(crc16(sv("\0", 1)) == 0);
  CHECK(crc16("A") == 0x58E5);
}

TEST_CASE("key_slot gives the slots CLUSTER KEYSLOT of Redis 7.0 gives") {
  // Each value read from `redis-cli cluster keyslot KEY` on a 7.0.15 cluster.
  CHECK(key_slot("123456789") == 12739);
  CHECK(key_slot("foo") == 12182);
  CHECK(key_slot("") == 0);
  CHECK(key_slot("{user1000}.following") == 3443);
  CHECK(key_slot("foo{}{bar}") == 8363);
  CHECK(key_slot("foo{{bar}}zap") == 4015);
  CHECK(key_slot("foo{bar}{zap}") == 5061);
}

TEST_CASE("hash tags: the first {...} with something inside is hashed, else the whole key") {
  CHECK(hash_tag("{user1000}.following") == "user1000");
  CHECK(key_slot("{user1000}.following") == key_slot("{user1000}.followers"));
  CHECK(hash_tag("foo{}{bar}") == "foo{}{bar}");  // empty tag: the whole key
  CHECK(hash_tag("foo{{bar}}zap") == "{bar");
  CHECK(hash_tag("foo{bar}{zap}") == "bar");
  CHECK(hash_tag("no-brace") == "no-brace");
  CHECK(hash_tag("open{only") == "open{only");
  CHECK(hash_tag("close}only{") == "close}only{");
  CHECK(key_slot("{q}:queue") == key_slot("q"));
  CHECK(key_slot("foo{bar}{zap}") == key_slot("bar"));
}

TEST_CASE("command_keys finds the keys of EVAL, XREAD, MSET, multi-key and keyless commands") {
  CHECK(keys_of({"GET", "k"}) == std::vector<sv>{"k"});
  CHECK(keys_of({"XADD", "s", "*", "v", "1"}) == std::vector<sv>{"s"});
  CHECK(keys_of({"EVAL", "return 1", "2", "a", "b", "x", "y"}) == std::vector<sv>{"a", "b"});
  CHECK(keys_of({"evalsha", "abc", "0", "x"}).empty());
  CHECK(keys_of({"XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "s1", "s2", ">", ">"}) ==
        std::vector<sv>{"s1", "s2"});
  CHECK(keys_of({"XREAD", "BLOCK", "100", "streams", "s", "0-0"}) == std::vector<sv>{"s"});
  CHECK(keys_of({"XREADGROUP", "GROUP", "streams", "streams", "STREAMS", "s", ">"}) == std::vector<sv>{"s"});
  CHECK(keys_of({"MSET", "a", "1", "b", "2"}) == std::vector<sv>{"a", "b"});
  CHECK(keys_of({"MGET", "a", "b", "c"}) == std::vector<sv>{"a", "b", "c"});
  CHECK(keys_of({"BLPOP", "a", "b", "0"}) == std::vector<sv>{"a", "b"});
  CHECK(keys_of({"XGROUP", "CREATE", "s", "g", "0"}) == std::vector<sv>{"s"});
  CHECK(keys_of({"RENAME", "a", "b"}) == std::vector<sv>{"a", "b"});
  CHECK(keys_of({"PING"}).empty());
  CHECK(keys_of({"CONFIG", "GET", "save"}).empty());
  CHECK(keys_of({"CLUSTER", "KEYSLOT", "k"}).empty());
}

TEST_CASE("malformed EVAL numkeys and XREAD without STREAMS are std::invalid_argument") {
  CHECK_THROWS_AS(keys_of({"EVAL", "s", "x"}), std::invalid_argument);
  CHECK_THROWS_AS(keys_of({"EVAL", "s", "3", "a"}), std::invalid_argument);
  CHECK_THROWS_AS(keys_of({"EVAL", "s", "-1"}), std::invalid_argument);
  CHECK_THROWS_AS(keys_of({"EVAL", "s"}), std::invalid_argument);
  CHECK_THROWS_AS(keys_of({"XREAD", "COUNT", "1", "s", "0"}), std::invalid_argument);
  CHECK_THROWS_AS(keys_of({"XREAD", "STREAMS", "a", "b", "0"}), std::invalid_argument);
}

TEST_CASE("command_slot: one hash tag is one slot; keys in two slots are cross_slot_error naming no key") {
  const std::vector<sv> same = {"MGET", "{t}:a", "{t}:b"};
  CHECK(command_slot(same) == key_slot("t"));
  const std::vector<sv> none = {"PING"};
  CHECK_FALSE(command_slot(none).has_value());
  const std::vector<sv> two = {"EVAL", "return 1", "2", "secret-key-a", "secret-key-b"};
  REQUIRE(key_slot("secret-key-a") != key_slot("secret-key-b"));
  try {
    (void)command_slot(two);
    FAIL("no cross_slot_error");
  } catch (const corio::redis::cross_slot_error& e) {
    const std::string what = e.what();
    CHECK(what.find("EVAL") != std::string::npos);
    CHECK(what.find("slot " + std::to_string(key_slot("secret-key-b"))) != std::string::npos);
    CHECK(what.find("hash tag") != std::string::npos);
    CHECK(what.find("secret-key") == std::string::npos);
  }
}
