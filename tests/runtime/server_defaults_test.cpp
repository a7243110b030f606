// server_defaults: the shard count and idle polling a server starts with.
#include <doctest/doctest.h>

#include <corio/runtime/runtime.hpp>
#include <corio/runtime/server_defaults.hpp>

#include <sched.h>

#include <chrono>

using namespace std::chrono_literals;

namespace {
unsigned cpus_allowed() {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
  return static_cast<unsigned>(CPU_COUNT(&set));
}
}  // namespace

TEST_CASE("a server takes one shard per CPU, but one in all on 1-2 CPUs when its requests hop between shards") {
  using corio::shard_traffic;
  CHECK(corio::default_server_shards(0, shard_traffic::none) == 1);
  CHECK(corio::default_server_shards(1, shard_traffic::none) == 1);
  CHECK(corio::default_server_shards(2, shard_traffic::none) == 2);
  CHECK(corio::default_server_shards(64, shard_traffic::none) == 64);
  CHECK(corio::default_server_shards(0, shard_traffic::cross_shard) == 1);
  CHECK(corio::default_server_shards(1, shard_traffic::cross_shard) == 1);
  CHECK(corio::default_server_shards(2, shard_traffic::cross_shard) == 1);
  CHECK(corio::default_server_shards(3, shard_traffic::cross_shard) == 3);
  CHECK(corio::default_server_shards(64, shard_traffic::cross_shard) == 64);
}

TEST_CASE("server_runtime_options: shards from this process's CPUs, pinned when on every CPU, polling 50 us") {
  const corio::runtime_options o = corio::server_runtime_options();
  CHECK(o.shards == corio::default_server_shards(cpus_allowed(), corio::shard_traffic::none));
  CHECK(o.pin);  // a shard per CPU
  const corio::runtime_options hopping = corio::server_runtime_options(corio::shard_traffic::cross_shard);
  CHECK(hopping.shards == corio::default_server_shards(cpus_allowed(), corio::shard_traffic::cross_shard));
  CHECK(hopping.pin == (hopping.shards == cpus_allowed()));
  CHECK(o.loop.idle_poll == 50us);
  CHECK(corio::default_server_idle_poll == 50us);
  // The rest is runtime_options' own defaults.
  const corio::runtime_options plain;
  CHECK(o.queue_capacity == plain.queue_capacity);
  CHECK(o.use_msg_ring == plain.use_msg_ring);
  CHECK(o.loop.entries == plain.loop.entries);
}

TEST_CASE("a runtime built from server_runtime_options runs with that many shards") {
  corio::runtime rt(corio::server_runtime_options());
  const unsigned expected = corio::default_server_shards(cpus_allowed(), corio::shard_traffic::none);
  CHECK(rt.shard_count() == expected);
  CHECK(rt.run([]() -> corio::task<unsigned> { co_return corio::shard_count(); }()) == expected);
}
