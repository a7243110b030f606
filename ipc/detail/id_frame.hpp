#pragma once
// The frames pool and executor pass through their rings: [u64 id][body], the id in host
// byte order. A ring frame is whatever length the producer wrote (spsc_ring checks only
// that it lies inside the ring), so a frame is split only here, after checking that it
// holds its id: a short frame (a worker's memory corrupted, a process that is not ours
// writing the ring) is a clear std::runtime_error, not a read past the frame.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>

namespace corio::detail {

inline constexpr std::size_t id_frame_header = sizeof(std::uint64_t);

struct id_frame {
  std::uint64_t id;
  std::span<const std::byte> body;  // the rest of the frame
};

[[noreturn]] inline void throw_short_id_frame(const char* what, std::size_t size) {
  throw std::runtime_error(std::string(what) + ": corrupt frame of " + std::to_string(size) +
                           " bytes (shorter than its 8-byte id)");
}

// `what` names the frame in the error: "corio::pool: a reply from a worker".
inline id_frame split_id_frame(std::span<const std::byte> frame, const char* what) {
  if (frame.size() < id_frame_header) [[unlikely]]
    throw_short_id_frame(what, frame.size());
  id_frame f{0, frame.subspan(id_frame_header)};
  std::memcpy(&f.id, frame.data(), id_frame_header);
  return f;
}

}  // namespace corio::detail
