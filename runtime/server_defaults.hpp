#pragma once
// server_defaults: the runtime a server process starts with when its user says nothing.
//
//     corio::runtime rt(corio::server_runtime_options());   // what server::run() uses
//
// corio::runtime_options' own defaults suit any program: a shard per CPU, each sleeping
// in the kernel as soon as it runs out of work. A server is measured under load, started
// plainly (`kv_server 6380`), often on a small machine beside its clients, so its
// defaults differ in two ways (docs/server.md, "Defaults", has the measurements):
//
// - Idle polling, 200 us (loop_options::idle_poll; Seastar polls as long by default).
//   Between two bursts of requests a shard keeps looking for work instead of sleeping,
//   so a client's send does not have to wake a sleeping thread, a wake-up paid on the
//   CLIENT's CPU inside its send call. It costs at most 200 us of CPU after each burst,
//   never more: an idle server sleeps.
// - Shards: one per CPU this process may use, except on a machine of one or two CPUs,
//   where it is ONE. There the clients, the kernel's network processing and the rest of
//   the machine need a CPU too: a second shard would compete with them, and a request
//   for a key on the other shard would wait whenever that shard's thread is not running
//   (kv_server on 2 shards served redis-benchmark at 0.63-0.77x redis-server here, on
//   one shard with polling above 1x).
//
// Each can be overridden: the examples take SHARDS and --idle-poll; a program sets the
// fields of the returned options.

#include <chrono>

#include "runtime.hpp"

namespace corio {

// How long a server's shard polls before it sleeps, by default.
inline constexpr std::chrono::microseconds default_server_idle_poll{200};

// The default shard count of a server on a machine where it may use `cpus` CPUs (at
// least 1 is returned).
unsigned default_server_shards(unsigned cpus) noexcept;

// runtime_options for a server: default_server_shards() of the CPUs this process may
// run on (its affinity mask), pinned, loops polling default_server_idle_poll.
runtime_options server_runtime_options();

}  // namespace corio
