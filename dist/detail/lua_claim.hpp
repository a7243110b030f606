#pragma once
// The Lua that opens the take scripts of dist::queue (stream_queue.cpp) and of the task
// pool (pool_protocol.cpp): claim one entry whose holder let its lease lapse. KEYS[1] is
// the stream; ARGV[1] the group, ARGV[2] the consumer, ARGV[3] the lease in ms. Leaves the
// XAUTOCLAIM reply in `c`; when the group is missing (Redis restarted without persistence)
// it re-creates it from id 0 and returns {2}, for the caller to report.

#include <string_view>

namespace corio::dist::detail {

inline constexpr std::string_view claim_lapsed_lua = R"lua(
local ok, c = pcall(redis.call, 'XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', 1)
if not ok then
  if string.find(tostring(c.err or c), 'NOGROUP') then
    redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
    return {2}
  end
  return redis.error_reply(tostring(c.err or c))
end
)lua";

}  // namespace corio::dist::detail
