// The slot map of a Redis Cluster client and the parsing of MOVED / ASK
// (dist/slot_map.hpp): good redirections and CLUSTER SLOTS replies read right; bad ones
// from a broken or lying server (slot out of range, no port, garbage) are cluster_error
// with a clear text, never a crash or a made-up address.
#include <doctest/doctest.h>

#include <corio/dist/redis_error.hpp>
#include <corio/dist/slot_map.hpp>

#include <string>
#include <utility>
#include <vector>

using corio::redis::cluster_error;
using corio::redis::parse_redirect;
using corio::redis::redirect;
using corio::redis::slot_map;
using corio::resp::reply;

namespace {

reply integer(std::int64_t n) { return reply{reply::kind::integer, n, {}, {}}; }
reply bulk(std::string s) { return reply{reply::kind::bulk, 0, std::move(s), {}}; }
reply array(std::vector<reply> e) { return reply{reply::kind::array, 0, {}, std::move(e)}; }
reply range(std::int64_t first, std::int64_t last, std::string host, std::int64_t port) {
  return array({integer(first), integer(last), array({bulk(std::move(host)), integer(port), bulk("node-id")})});
}

std::string refusal(const std::string& text) {
  try {
    (void)parse_redirect(text, "10.0.0.1");
  } catch (const cluster_error& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST_CASE("MOVED and ASK give the kind, the slot and a connectable address") {
  const redirect m = parse_redirect("MOVED 3999 127.0.0.1:6381", "10.0.0.1");
  CHECK(m.what == redirect::kind::moved);
  CHECK(m.slot == 3999);
  CHECK(m.address == "127.0.0.1:6381");
  const redirect a = parse_redirect("ASK 16383 10.1.2.3:7000", "10.0.0.1");
  CHECK(a.what == redirect::kind::ask);
  CHECK(a.slot == 16383);
  CHECK(a.address == "10.1.2.3:7000");
  // A node that does not know its own endpoint: the host of the node that answered.
  CHECK(parse_redirect("MOVED 0 :7001", "10.0.0.1").address == "10.0.0.1:7001");
  CHECK(parse_redirect("MOVED 0 ?:7001", "10.0.0.1").address == "10.0.0.1:7001");
  // IPv6 comes without brackets; the last colon is the port's.
  CHECK(parse_redirect("MOVED 7 ::1:7002", "10.0.0.1").address == "[::1]:7002");
}

TEST_CASE("a bad MOVED or ASK from a lying server is cluster_error quoting it, not a crash") {
  for (const char* bad : {"MOVED", "MOVED ", "MOVED 12", "MOVED abc 1.2.3.4:5", "MOVED 16384 1.2.3.4:5",
                          "MOVED -1 1.2.3.4:5", "MOVED 99999999999999999999 1.2.3.4:5", "MOVED 1 1.2.3.4",
                          "MOVED 1 1.2.3.4:0", "MOVED 1 1.2.3.4:65536", "MOVED 1 1.2.3.4:12x", "MOVED 1 1.2.3.4:",
                          "ASK 1 a:1 extra", "ASK  1 a:1", "MOVEDX 1 a:1", "ERR something"}) {
    CAPTURE(bad);
    const std::string what = refusal(bad);
    CHECK(what.find("redis cluster: cannot follow") != std::string::npos);
    CHECK(what.find(bad) != std::string::npos);
  }
  // A flood of text is quoted cut short.
  const std::string what = refusal("MOVED 1 " + std::string(100000, 'x'));
  CHECK(what.find("cannot follow") != std::string::npos);
  CHECK(what.size() < 300);
}

TEST_CASE("CLUSTER SLOTS fills the map; MOVED's assign moves one slot") {
  const slot_map m = slot_map::from_cluster_slots(
      array({range(0, 5460, "127.0.0.1", 7000), range(5461, 10922, "127.0.0.1", 7001), range(10923, 16383, "", 7002)}),
      "127.0.0.9");
  CHECK(m.covered() == 16384);
  CHECK(m.nodes().size() == 3);
  REQUIRE(m.owner(0) != nullptr);
  CHECK(*m.owner(0) == "127.0.0.1:7000");
  CHECK(*m.owner(5460) == "127.0.0.1:7000");
  CHECK(*m.owner(5461) == "127.0.0.1:7001");
  CHECK(*m.owner(16383) == "127.0.0.9:7002");  // an empty host: the node asked
  slot_map moved = m;
  moved.assign(5460, "127.0.0.1:7001");
  CHECK(*moved.owner(5460) == "127.0.0.1:7001");
  CHECK(*moved.owner(5459) == "127.0.0.1:7000");
  moved.assign(1, "127.0.0.1:7005");
  CHECK(moved.nodes().size() == 4);

  const slot_map partial = slot_map::from_cluster_slots(array({range(100, 199, "127.0.0.1", 7000)}), "x");
  CHECK(partial.covered() == 100);
  CHECK(partial.owner(99) == nullptr);
  CHECK(partial.owner(200) == nullptr);
  CHECK(slot_map().covered() == 0);
}

TEST_CASE("a CLUSTER SLOTS reply of the wrong shape is cluster_error") {
  const auto refused = [](const reply& r) {
    try {
      (void)slot_map::from_cluster_slots(r, "127.0.0.1");
    } catch (const cluster_error& e) {
      return std::string(e.what()).find("cannot follow CLUSTER SLOTS") != std::string::npos ||
             std::string(e.what()).find("port") != std::string::npos;
    }
    return false;
  };
  CHECK(refused(bulk("not an array")));
  CHECK(refused(array({integer(1)})));
  CHECK(refused(array({range(0, 16384, "127.0.0.1", 7000)})));
  CHECK(refused(array({range(-1, 5, "127.0.0.1", 7000)})));
  CHECK(refused(array({range(10, 5, "127.0.0.1", 7000)})));
  CHECK(refused(array({range(0, 5, "127.0.0.1", 0)})));
  CHECK(refused(array({range(0, 5, "127.0.0.1", 70000)})));
  CHECK(refused(array({array({integer(0), integer(5), array({bulk("127.0.0.1"), bulk("7000")})})})));
  CHECK(refused(array({array({integer(0), integer(5), array({bulk("127.0.0.1")})})})));
  CHECK(refused(array({array({integer(0), integer(5)})})));
}
