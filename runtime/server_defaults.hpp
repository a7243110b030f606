#pragma once
// server_defaults: the runtime a server process starts with when its user says nothing.
//
//     corio::runtime rt(corio::server_runtime_options());   // what server::run() uses
//
// corio::runtime_options' own defaults suit any program: a shard per CPU, each sleeping
// in the kernel as soon as it runs out of work. A server is measured under load, started
// plainly (`kv_server 6380`), often on a small machine beside its clients or other work,
// so its defaults differ (docs/server.md, "Defaults", has the measurements):
//
// - Idle polling, 50 us (loop_options::idle_poll). Between two bursts of requests a
//   shard keeps looking for work instead of sleeping, so a client's send does not have
//   to wake a sleeping thread, a wake-up paid on the CLIENT's CPU inside its send call
//   (kv_server on one shard: PING 0.92x redis-server without polling, 1.05x with 50 us,
//   docs/kv_server.md). It costs at most 50 us of CPU after each burst (an idle server
//   sleeps), and the poll yields the CPU to any thread waiting for it (loop.hpp), so on a
//   busy machine it takes little from the clients. Seastar polls 200 us by default; on
//   a machine shared with the clients and other work, 50 us kept the gain at a quarter
//   of the worst-case cost, and under a load average of 12 on 2 cores 200 us measured
//   no better.
// - Shards: one per CPU this process may use, except for a server whose requests hop
//   between shards (shard_traffic::cross_shard: kv_server, where a key lives on one
//   shard) on a machine of one or two CPUs: ONE shard there. A hop waits until the other
//   shard's thread runs, and with two CPUs shared with the clients and the kernel's
//   network processing it often does not (kv_server on 2 shards served redis-benchmark
//   at 0.63-0.77x redis-server here; on one, above 1x). A share-nothing server (HTTP,
//   echo) gains from the second shard instead, most on a busy machine, where a process
//   with two threads gets twice the CPU time of one with one.
//
// - Pinning: shard k on the k-th CPU when the server has a shard on every CPU; a server
//   with fewer shards than CPUs floats, so the scheduler can move it off a busy CPU.
//
// Each can be overridden: the examples take SHARDS and --idle-poll; a program sets the
// fields of the returned options.

#include <chrono>

#include "runtime.hpp"

namespace corio {

// How long a server's shard polls before it sleeps, by default.
inline constexpr std::chrono::microseconds default_server_idle_poll{50};

// Whether a server's requests send work to other shards (submit_to).
enum class shard_traffic {
  none,         // each connection is served by its own shard alone (HTTP, echo)
  cross_shard,  // requests hop to the shard that owns their data (kv_server's keys)
};

// The default shard count of a server on a machine where it may use `cpus` CPUs (at
// least 1 is returned).
unsigned default_server_shards(unsigned cpus, shard_traffic traffic) noexcept;

// runtime_options for a server: default_server_shards() of the CPUs this process may
// run on (its affinity mask), pinned only with a shard on every one of them, loops
// polling default_server_idle_poll.
runtime_options server_runtime_options(shard_traffic traffic = shard_traffic::none);

}  // namespace corio
