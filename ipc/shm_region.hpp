#pragma once
// corio::shm_region — a block of memory shared between processes.
//
// Meaning: an anonymous memfd (memfd_create, MFD_CLOEXEC | MFD_ALLOW_SEALING), sized and
// fully reserved with fallocate at creation, then sealed (F_SEAL_SHRINK | F_SEAL_GROW |
// F_SEAL_SEAL), mapped MAP_SHARED read/write. Nothing appears under /dev/shm and
// no name can be opened by another user: the memory is reachable only by this process, its
// fork()ed children (they inherit the mapping at the same address) and whoever receives
// the fd over a Unix socket (send_fd / shm_region::receive, SCM_RIGHTS).
//
// Why fallocate up front: a tmpfs-backed mapping that runs out of space faults with SIGBUS
// on first touch, far from the cause. Reserving every page at creation turns a full or
// too-small memory budget into a std::system_error from create(), naming the size.
//
// Why sealed: the size is part of the contract with every process the fd reaches. A peer
// that could ftruncate the memfd smaller would make every other mapping fault with SIGBUS
// on the lost pages; one that could grow it would make sizes disagree. The seals make the
// size immutable for everyone, the creator included, and F_SEAL_SEAL stops anyone from
// changing the seals. receive() maps only an fd that carries all three, so a sender cannot
// hand over a file it can still truncate (a regular file, an unsealed memfd). What a peer
// holding the fd can still do: write any bytes (structures placed in the region check what
// they read, see spsc_ring.hpp) and punch holes (FALLOC_FL_PUNCH_HOLE; the pages read back
// as zeros, they do not fault). Sealing needs Linux 3.17, as memfd_create itself.
//
// Who may touch it: any thread of any process holding a mapping; the bytes carry no
// synchronisation of their own (structures placed in it bring their own, see
// ipc/detail/shared_atomic.hpp). Ownership: the object owns one mapping and one fd and
// releases both in its destructor; in a fork()ed child the copy of the object owns the
// child's copy of the mapping and fd. The memory lives until the last mapping and fd in any
// process are gone.
//
// Errors: std::system_error whose what() names the operation, the region's debug name and
// size, then the errno text; std::invalid_argument for a zero size.

#include <cstddef>
#include <optional>
#include <string>

namespace corio {

class shm_region {
 public:
  // A new region of exactly `bytes` bytes, zero-filled. `name_for_debug` shows in
  // /proc/PID/fd and /proc/PID/maps as "memfd:NAME" and in error messages.
  [[nodiscard]] static shm_region create(std::size_t bytes, const char* name_for_debug);

  // Receives a region sent with send_fd on a connected Unix socket and maps all of it.
  // Blocks until a message arrives. Refuses (std::system_error, EINVAL; the fd is closed)
  // an fd that is not a memfd sealed with F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL (what
  // create() makes), and one whose size (fstat) is not `expected_bytes` when given.
  [[nodiscard]] static shm_region receive(int unix_socket_fd, std::optional<std::size_t> expected_bytes = std::nullopt);
  // The checks and the mapping of receive() for an fd that arrived some other way (an
  // inherited fd, a handoff message: ipc/handoff.hpp). Takes ownership of `fd`: on a
  // refusal (std::system_error, EINVAL, naming what is wrong) it is closed.
  [[nodiscard]] static shm_region adopt(int fd, std::optional<std::size_t> expected_bytes = std::nullopt);

  shm_region(shm_region&& other) noexcept;
  shm_region& operator=(shm_region&& other) noexcept;
  shm_region(const shm_region&) = delete;
  shm_region& operator=(const shm_region&) = delete;
  ~shm_region();

  [[nodiscard]] std::byte* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  // The memfd (close-on-exec); owned by the region, valid until it is destroyed.
  [[nodiscard]] int fd() const noexcept { return fd_; }

 private:
  shm_region(int fd, std::byte* data, std::size_t size) noexcept : fd_(fd), data_(data), size_(size) {}
  void reset() noexcept;

  int fd_ = -1;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

namespace detail {
// Physical memory plus swap, in bytes: no memory larger than this can ever be reserved.
[[nodiscard]] std::size_t memory_ceiling() noexcept;
// Why fd is not a memfd sealed as create() seals (F_SEAL_SHRINK | F_SEAL_GROW |
// F_SEAL_SEAL: its size is final); empty when it is one. For received fds that are not
// mapped whole (a queue's value arena, detail/value_arena.hpp).
[[nodiscard]] std::string sealed_memfd_problem(int fd);
}  // namespace detail

// Sends the region's fd over a connected Unix socket (SCM_RIGHTS, with one data byte).
// The receiver maps the same memory with shm_region::receive.
void send_fd(int unix_socket_fd, const shm_region& region);

}  // namespace corio
