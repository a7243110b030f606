#pragma once
// The message under corio::send_handle / receive_handle (ipc/handoff.hpp, which states the
// contract): one fixed-size header sent with the object's fds (SCM_RIGHTS) and the sender's
// credentials (SCM_CREDENTIALS) in one sendmsg on a Unix stream socket, and what the
// receiving side does with it before any typed code sees the fds.
//
// Wire format (handoff_header, 192 bytes, host byte order: both ends are on one machine)
//   magic             "corioHO1": anything else is not a corio handoff (refused)
//   version           2 (1 sent a queue as one memfd, before queues had a value arena)
//   kind              handoff_kind: what the fds are (a queue, a connection, ...)
//   fd_count          how many fds the control data carries (1 to 3)
//   sender_pid        the sender's getpid(), in its own pid namespace
//   type_fingerprint  FNV-1a of the element type's mangled name, mixed with its size
//                     (0: untyped, a shm_region)
//   params            kind-specific: a region's size, a connection's modes, a queue's
//                     value arena span and kept bytes per slot; the unused ones zero
//                     (checked, as the bytes after type_name's NUL)
//   type_name         the element type's mangled name, NUL-terminated, cut at 127
//                     characters (compared too, and shown in messages)
// The header has a fixed size so that the receiver reads exactly one message from the
// stream and never a byte of the next one; the control data arrives with its first byte.
//
// What the receiver owns: every fd that arrived is owned by a received_handoff from the
// recvmsg on, and closed by its destructor unless the typed code took it: a refusal at any
// step leaks nothing.

#include "../../runtime/errors.hpp"

#include <sys/socket.h>
#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <utility>

#include "../shm_region.hpp"

namespace corio {

// A handle that arrived but cannot be used: not a corio handoff message, cut short, the
// wrong kind of object, an element type other than the receiver's, fds missing or of the
// wrong type, shared memory that is unsealed, of the wrong size or not laid out as the
// object's. what() names the receiving call and what was wrong. Failures of the socket
// itself are std::system_error.
class handoff_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

enum class handoff_kind : std::uint32_t {
  region = 1,          // shm_region: one memfd; params[0] = its size
  queue = 2,           // queue<T>: the memfd of ring and control block, then the value arena's;
                       // params[0] = the arena's span, params[1] = its kept bytes, per slot
  joinable_queue = 3,  // joinable_queue<T>: the queue's two memfds, then the task counter's;
                       // params as queue
  connection = 4,      // connection<T>: a Unix stream socket; params[0] = its modes
  shared_state = 5,    // a process_mutex, process_event, shared_value<T>, ...: one memfd
};

inline constexpr std::uint64_t handoff_magic = 0x314f486f69726f63ULL;  // "corioHO1"
inline constexpr std::uint32_t handoff_version = 2;
inline constexpr std::size_t handoff_max_fds = 3;

struct handoff_header {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t kind;
  std::uint32_t fd_count;
  std::int32_t sender_pid;
  std::uint64_t type_fingerprint;
  std::uint64_t params[4];
  char type_name[128];
};
static_assert(sizeof(handoff_header) == 192);
static_assert(std::is_trivially_copyable_v<handoff_header>);

// What identifies an element type across two separately built programs: its mangled name
// (the Itanium ABI spells a type the same way in every program and with GCC and Clang) and
// its size (a struct whose definition changed between the two builds usually changed it).
struct type_identity {
  std::uint64_t fingerprint = 0;  // 0: untyped
  const char* mangled = "";
};
[[nodiscard]] std::uint64_t type_fingerprint(const char* mangled, std::size_t size) noexcept;
template <class T>
[[nodiscard]] type_identity type_identity_of() {
  if constexpr (std::is_void_v<T>) {
    return {};
  } else {
    return {type_fingerprint(typeid(T).name(), sizeof(T)), typeid(T).name()};
  }
}

// What one send carries besides the header fields above.
struct handoff_parts {
  std::array<int, handoff_max_fds> fds{-1, -1, -1};
  std::uint32_t fd_count = 0;
  std::array<std::uint64_t, 4> params{};
};

// What the receiving call expects; every field is checked against the header.
struct handoff_expectation {
  handoff_kind kind;
  std::uint32_t fd_count;
  type_identity element;
  // Objects whose dead-process recovery names processes by pid (queues, locks) are refused
  // from a sender in another pid namespace (see handoff.hpp, "Dead processes").
  bool same_pid_namespace;
  std::string what;  // "receive_handle<corio::queue<int>>", for messages
};

// A message that passed every check of the header; owns its fds until taken.
class received_handoff {
 public:
  received_handoff() = default;
  received_handoff(received_handoff&& o) noexcept;
  received_handoff& operator=(received_handoff&&) = delete;
  received_handoff(const received_handoff&) = delete;
  ~received_handoff();

  [[nodiscard]] const handoff_header& header() const noexcept { return header_; }
  [[nodiscard]] const std::string& what() const noexcept { return what_; }
  // Gives up ownership of fd i.
  [[nodiscard]] int take_fd(std::size_t i) noexcept;
  // fd i, still owned by the message: a callee that takes it sets it to -1 (a value
  // arena, once the ring it belongs to checked out), else the message closes it.
  [[nodiscard]] int& fd(std::size_t i) noexcept { return fds_[i]; }
  // fd i as a shm_region (sealed memfd, see shm_region::adopt); handoff_error otherwise.
  [[nodiscard]] shm_region take_region(std::size_t i, const char* role);
  // fd i after checking it is a connected-or-not AF_UNIX SOCK_STREAM socket.
  [[nodiscard]] int take_unix_stream_socket(std::size_t i, const char* role);
  // Throws handoff_error naming the call: "<what>: <why>".
  [[noreturn]] void refuse(const std::string& why) const;

 private:
  friend class handoff_reader;
  handoff_header header_{};
  std::array<int, handoff_max_fds> fds_{-1, -1, -1};
  std::string what_;
};

// SO_PASSCRED on a socket for as long as it lives (the kernel then reports a sender's
// credentials), put back as it was afterwards: receiving a handle leaves the caller's
// socket as it found it.
class passcred_scope {
 public:
  passcred_scope(int socket_fd, const std::string& what);
  passcred_scope(passcred_scope&& o) noexcept : restore_fd_(std::exchange(o.restore_fd_, -1)) {}
  passcred_scope& operator=(passcred_scope&&) = delete;
  ~passcred_scope();

 private:
  int restore_fd_ = -1;  // the socket to turn SO_PASSCRED off on again; -1: nothing to do
};

// Reads one message from a socket, in steps so that the async receive can wait in the
// loop between them.
class handoff_reader {
 public:
  handoff_reader(int socket_fd, handoff_expectation expect);
  // One recvmsg (flags: 0 blocks, MSG_DONTWAIT does not). true once the whole header
  // arrived; false when more is needed (or, with MSG_DONTWAIT, nothing was there yet).
  // handoff_error when the peer closed first or sent more fds than a handoff carries.
  bool step(int flags);
  // The checks of the header against the expectation; the message then belongs to the
  // caller.
  [[nodiscard]] received_handoff finish();
  [[nodiscard]] int socket_fd() const noexcept { return socket_; }
  // Blocks the thread until the socket is readable (poll(2)).
  void wait_readable() const;

 private:
  void keep_fds(const cmsghdr& rights);
  int socket_;
  passcred_scope passcred_;
  handoff_expectation expect_;
  received_handoff message_;
  std::size_t got_ = 0;
  std::size_t fds_got_ = 0;
  bool extra_fds_ = false;
  pid_t credential_pid_ = 0;  // the sender's pid as the kernel reports it here; 0: unknown
};

// Sends the header and fds in one sendmsg (the rest with send if the kernel took less).
void send_handoff(int socket_fd, handoff_kind kind, type_identity element, const handoff_parts& parts,
                  const std::string& what);

// Why fd is not an AF_UNIX SOCK_STREAM socket; empty when it is one.
[[nodiscard]] std::string unix_stream_socket_problem(int fd);

// In a catch block: rethrows the current exception (a refusal by a constructor that
// checks shared memory, std::invalid_argument or std::system_error) as handoff_error
// naming the call; handoff_error itself passes unchanged.
[[noreturn]] void rethrow_as_handoff_error(const received_handoff& m);

}  // namespace detail

}  // namespace corio
