#include "server_defaults.hpp"

#include "detail/cpu_affinity.hpp"

namespace corio {

unsigned default_server_shards(unsigned cpus, shard_traffic traffic) noexcept {
  if (cpus == 0 || (traffic == shard_traffic::cross_shard && cpus <= 2)) return 1;
  return cpus;
}

runtime_options server_runtime_options(shard_traffic traffic) {
  const unsigned cpus = detail::usable_cpu_count();
  runtime_options options;
  options.shards = default_server_shards(cpus, traffic);
  // A server with a shard on every CPU owns the machine: shard k on CPU k. One that
  // leaves CPUs to others floats, so the scheduler can move it off a busy CPU (pinned,
  // kv_server's one shard served 0.5-0.8x of redis-server under load, floating 0.95-1.4x).
  options.pin = options.shards >= cpus;
  options.loop.idle_poll = default_server_idle_poll;
  return options;
}

}  // namespace corio
