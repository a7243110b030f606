// libFuzzer target: the spsc_ring consumer (peek / pop / drain) facing a hostile producer
// that controls every shared byte: the indices in the header and the frames in the data
// area, before attach and between reads. Whatever it writes, the consumer must only hand
// out spans inside the data area, and fail with the documented exceptions
// (std::runtime_error for a corrupt frame, std::invalid_argument from attach), never read
// or write outside the mapping.
//
// Input: byte 0 picks the capacity (64 << (b % 7) bytes, 64 .. 4096); 8 bytes read index,
// 8 bytes write index (little-endian, as the producer would store them); `capacity` bytes
// of data area (zero-filled if the input is shorter); then a script, one op per byte:
//   0: peek, read every byte of the frame, pop       1: drain up to 1 + next byte frames
//   2: the producer stores the next 8 bytes as its write index
//   3: the producer writes the next 4 bytes at data offset (next 2 bytes) % capacity
#include <corio/ipc/spsc_ring.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>

#include "fuzz_check.hpp"

namespace {

struct input {
  const std::uint8_t* p;
  std::size_t left;
  bool take(void* out, std::size_t n) {
    if (left < n) return false;
    std::memcpy(out, p, n);
    p += n;
    left -= n;
    return true;
  }
};

// Exactly the ring's bytes, 64-byte aligned, so a read past the data area is a heap
// overflow under ASan.
struct ring_memory {
  std::size_t size;
  std::byte* bytes;
  explicit ring_memory(std::size_t n) : size(n), bytes(static_cast<std::byte*>(::operator new(n, std::align_val_t{64}))) {
    std::memset(bytes, 0, n);
  }
  ~ring_memory() { ::operator delete(bytes, std::align_val_t{64}); }
  ring_memory(const ring_memory&) = delete;
  ring_memory& operator=(const ring_memory&) = delete;
};

volatile std::uint8_t sink;

void consume(std::span<const std::byte> frame, const ring_memory& m) {
  const std::byte* data = m.bytes + corio::spsc_ring::header_bytes;
  const std::byte* end = m.bytes + m.size;
  corio_fuzz::check(frame.data() >= data && frame.data() <= end &&
                        frame.size() <= static_cast<std::size_t>(end - frame.data()),
                    "spsc_ring handed out a frame that is not inside the data area");
  std::uint8_t x = 0;
  for (std::byte b : frame) x ^= static_cast<std::uint8_t>(b);
  sink = x;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  input in{data, size};
  std::uint8_t pick = 0;
  if (!in.take(&pick, 1)) return 0;
  const std::size_t capacity = std::size_t{64} << (pick % 7);
  ring_memory m(corio::spsc_ring::header_bytes + capacity);
  auto* header = reinterpret_cast<corio::detail::spsc_ring_header*>(m.bytes);
  std::byte* ring_data = m.bytes + corio::spsc_ring::header_bytes;
  (void)corio::spsc_ring::format(std::span<std::byte>(m.bytes, m.size));

  // The hostile producer's initial state.
  std::uint64_t read_index = 0, write_index = 0;
  in.take(&read_index, 8);
  in.take(&write_index, 8);
  header->read_index = read_index;
  header->write_index = write_index;
  const std::size_t fill = in.left < capacity ? in.left : capacity;
  in.take(ring_data, fill);

  try {
    corio::spsc_ring ring = corio::spsc_ring::attach(std::span<std::byte>(m.bytes, m.size));
    std::uint8_t op = 0;
    while (in.take(&op, 1)) {
      switch (op % 4) {
        case 0:
          if (auto frame = ring.peek()) {
            consume(*frame, m);
            ring.pop();
          }
          break;
        case 1: {
          std::uint8_t n = 0;
          in.take(&n, 1);
          ring.drain([&](std::span<const std::byte> frame) { consume(frame, m); }, std::size_t{1} + n);
          break;
        }
        case 2: {
          std::uint64_t w = 0;
          if (in.take(&w, 8)) __atomic_store_n(&header->write_index, w, __ATOMIC_RELEASE);
          break;
        }
        default: {
          std::uint16_t at = 0;
          std::uint8_t bytes[4] = {};
          if (in.take(&at, 2) && in.take(bytes, 4)) {
            const std::size_t pos = at % capacity;
            const std::size_t n = capacity - pos < 4 ? capacity - pos : 4;
            std::memcpy(ring_data + pos, bytes, n);
          }
          break;
        }
      }
    }
  } catch (const std::runtime_error&) {
    // a corrupt frame, reported: the documented answer to a hostile producer
  } catch (const std::invalid_argument&) {
    // attach refused the header
  }
  return 0;
}
