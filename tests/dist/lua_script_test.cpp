// detail::lua_script and detail::sha1_hex: the SHA-1 of FIPS 180's examples and of
// bodies that pad into one and two blocks, the same SHA1 as a real redis-server's SCRIPT
// LOAD, and a lying SCRIPT LOAD (another SHA1, garbage, an integer) refused as
// redis::unexpected_reply before any EVALSHA is sent.
#include <doctest/doctest.h>

#include <corio/dist/detail/lua_script.hpp>
#include <corio/dist/detail/sha1.hpp>
#include <corio/runtime/loop.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "../needs_feature.hpp"
#include "fake_redis.hpp"
#include "redis_server.hpp"

using namespace std::chrono_literals;
using corio::dist::detail::lua_script;
using corio::dist::detail::sha1_hex;
using steady = std::chrono::steady_clock;

TEST_CASE("sha1_hex gives FIPS 180's digests, and the padding's one- and two-block cases agree with sha1sum") {
  CHECK(sha1_hex("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(sha1_hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(sha1_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");  // 56 bytes: the length needs a second block
  CHECK(sha1_hex(std::string(1000000, 'a')) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  // 55, 63 and 64 bytes (the edges of the padding), as sha1sum gives them.
  CHECK(sha1_hex(std::string(55, 'x')) == "cef734ba81a024479e09eb5a75b6ddae62e6abf1");
  CHECK(sha1_hex(std::string(63, 'x')) == "0ddc4e0cccd9a12850deb5abb0853a4425559fec");
  CHECK(sha1_hex(std::string(64, 'x')) == "bb2fa3ee7afb9f54c6dfb5d021f14b1ffe40c163");
}

REDIS_TEST_CASE("a real redis-server's SCRIPT LOAD answers the SHA1 computed here, and the script runs by it") {
  corio_test::redis_server server;
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(corio_test::options_for(server));
    const std::string body = "return tonumber(ARGV[1]) * 6";
    CHECK((co_await c.command("SCRIPT", "LOAD", body)).str == sha1_hex(body));
    const lua_script script(body);
    const std::string_view args[] = {"0", "7"};
    CHECK((co_await script.run(c, args)).integer == 42);
  }());
}

TEST_CASE("a SCRIPT LOAD answering another SHA1, garbage or an integer is unexpected_reply, and no EVALSHA is sent"
          * doctest::timeout(30)) {
  struct lie {
    std::string answer, shown;
  };
  const std::string body = "return 1";
  const std::string sha = sha1_hex(body);
  const lie lies[] = {
      {corio_test::bulk(std::string(40, 'a')), "\"" + std::string(32, 'a') + "\"..."},  // well-formed, not the script's
      {corio_test::bulk("\r\n\x01garbage"), "\"\\x0d\\x0a\\x01garbage\""},
      {":7\r\n", "7"},
      {"*1\r\n" + corio_test::bulk(sha), "[\"" + sha.substr(0, 32) + "\"...]"},  // the right SHA1 in the wrong type
  };
  for (const lie& l : lies) {
    CAPTURE(l.shown);
    std::atomic<int> evalsha{0};
    corio_test::fake_redis liar([&](const std::vector<std::string_view>& argv, int) -> std::string {
      if (argv[0] == "SCRIPT") return l.answer;
      if (argv[0] == "EVALSHA" || argv[0] == "EVAL") ++evalsha;
      return ":1\r\n";
    });
    const lua_script script(body);  // a fresh one: a script is loaded once per process
    const auto start = steady::now();
    corio::loop lp;
    lp.run([&]() -> corio::task<void> {
      auto c = co_await corio::redis::client::connect(corio::redis::options(liar.address()));
      const std::string_view args[] = {"0"};
      try {
        co_await script.run(c, args);
        FAIL("no error");
      } catch (const corio::redis::unexpected_reply& e) {
        CHECK(std::string(e.what()) == "corio::dist: SCRIPT LOAD answered " + l.shown + ", not the script's SHA1 " +
                                           sha + " (a broken or lying server?)");
      }
    }());
    CHECK(evalsha == 0);
    CHECK(steady::now() - start < 5s);
  }
}
