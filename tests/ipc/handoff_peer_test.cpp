// handoff: what receive_handle makes of messages that do not come from corio's sender —
// written in pieces, garbage, the wrong kind or type, fds missing or of the wrong sort, from
// another pid namespace — each refused with handoff_error naming what was wrong, no fd
// leaked. The round trips are in handoff_test.cpp.
#include <doctest/doctest.h>

#include "../needs_feature.hpp"
#include "ipc_test_support.hpp"

#include <corio/ipc/handoff.hpp>
#include <corio/ipc/process_event.hpp>
#include <corio/ipc/process_mutex.hpp>

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using corio::handoff_error;
using corio::unix_stream;
using corio_test::exit_status;
using corio_test::fork_child;

namespace {

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// A header as corio's sender writes it, to be spoiled field by field.
corio::detail::handoff_header header_for(corio::detail::handoff_kind kind, const char* mangled, std::size_t size,
                                         std::uint32_t fd_count) {
  corio::detail::handoff_header h{};
  h.magic = corio::detail::handoff_magic;
  h.version = corio::detail::handoff_version;
  h.kind = static_cast<std::uint32_t>(kind);
  h.fd_count = fd_count;
  h.sender_pid = ::getpid();
  h.type_fingerprint = *mangled ? corio::detail::type_fingerprint(mangled, size) : 0;
  std::strcpy(h.type_name, mangled);
  return h;
}
corio::detail::handoff_header string_queue_header(std::uint32_t fd_count = 2) {
  return header_for(corio::detail::handoff_kind::queue, typeid(std::string).name(), sizeof(std::string), fd_count);
}

// Sends the first `bytes` bytes of h with `fds` and (unless told not to) this process's
// credentials attached, as a sender that is not corio can.
void send_raw(int socket_fd, const corio::detail::handoff_header& h, std::vector<int> fds,
              std::size_t bytes = sizeof(corio::detail::handoff_header), bool credentials = true) {
  iovec iov{const_cast<corio::detail::handoff_header*>(&h), bytes};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8) + CMSG_SPACE(sizeof(ucred))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = (fds.empty() ? 0 : CMSG_SPACE(sizeof(int) * fds.size())) +
                       (credentials ? CMSG_SPACE(sizeof(ucred)) : 0);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (!fds.empty()) {
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    c = CMSG_NXTHDR(&msg, c);
  }
  if (credentials) {
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof(ucred));
    const ucred me{::getpid(), ::geteuid(), ::getegid()};
    std::memcpy(CMSG_DATA(c), &me, sizeof me);
  }
  if (msg.msg_controllen == 0)
    msg.msg_control = nullptr;
  REQUIRE(::sendmsg(socket_fd, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes));
}

int sealed_memfd(std::size_t bytes) {
  const int fd = ::memfd_create("handoff-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, static_cast<off_t>(bytes)) == 0);
  REQUIRE(::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0);
  return fd;
}

// Sends a queue header with `ring_fd` as the queue's memory and a sealed memfd as its
// value arena (refused after the ring, if at all), then closes ring_fd.
void send_with_ring(int socket_fd, const corio::detail::handoff_header& h, int ring_fd) {
  const int arena = sealed_memfd(4096);
  send_raw(socket_fd, h, {ring_fd, arena});
  ::close(ring_fd);
  ::close(arena);
}

// A sender of a queue<std::string> header changed by spoil(h), with two sealed memfds.
template <class Spoil>
auto spoiled_queue_header(Spoil spoil) {
  return [spoil](int s) {
    auto h = string_queue_header();
    spoil(h);
    send_with_ring(s, h, sealed_memfd(4096));
  };
}

// The message corio's sender writes for `object`, caught raw: its header and its fds
// (for a queue: the ring's memfd, then the value arena's), owned by the caller.
struct caught_message {
  corio::detail::handoff_header header{};
  std::vector<int> fds;
};
template <class Object>
caught_message catch_message(const Object& object) {
  caught_message m;
  auto [a, b] = unix_stream::pair();
  corio::send_handle(a, object);
  iovec iov{&m.header, sizeof m.header};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4) + CMSG_SPACE(sizeof(ucred))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  REQUIRE(::recvmsg(b.fd(), &msg, MSG_CMSG_CLOEXEC) == static_cast<ssize_t>(sizeof m.header));
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_type != SCM_RIGHTS) continue;
    for (std::size_t k = 0; k < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++k) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
      m.fds.push_back(fd);
    }
  }
  return m;
}

// What receive_handle<Object> throws (a handoff_error is required) after `send` wrote to
// the other end; also checks that no received fd was left open.
template <class Object, class Send>
std::string refusal(Send send) {
  auto [a, b] = unix_stream::pair();
  const std::size_t before = open_fd_count();
  send(a.fd());
  std::string message = "<accepted>";
  try {
    (void)corio::receive_handle<Object>(b);
  } catch (const handoff_error& e) {
    message = e.what();
  }
  CHECK(open_fd_count() == before);  // every fd that arrived was closed
  return message;
}

const std::string string_queue = "corio::receive_handle<corio::queue<std::__cxx11::basic_string<char, "
                                 "std::char_traits<char>, std::allocator<char> > >>";

}  // namespace
TEST_CASE("receive_handle on a non-blocking socket waits for a message that comes late, in pieces") {
  auto [a, b] = unix_stream::pair();
  REQUIRE(::fcntl(b.fd(), F_SETFL, ::fcntl(b.fd(), F_GETFL) | O_NONBLOCK) == 0);
  const pid_t pid = fork_child([&, &a = a] {
    // The header of a real handoff in two writes, 50 ms apart; the fd goes with the first.
    const auto h = header_for(corio::detail::handoff_kind::region, "", 0, 1);
    auto region = corio::shm_region::create(4096, "handoff-test");
    auto full = h;
    full.params[0] = 4096;
    ::usleep(50'000);
    send_raw(a.fd(), full, {region.fd()}, 100);
    ::usleep(50'000);
    const auto* rest = reinterpret_cast<const char*>(&full) + 100;
    return ::send(a.fd(), rest, sizeof full - 100, 0) == static_cast<ssize_t>(sizeof full - 100) ? 0 : 10;
  });
  const auto start = std::chrono::steady_clock::now();
  std::clock_t cpu = std::clock();
  CHECK(corio::receive_handle<corio::shm_region>(b).size() == 4096);
  cpu = std::clock() - cpu;
  CHECK(std::chrono::steady_clock::now() - start >= 90ms);
  CHECK(cpu < CLOCKS_PER_SEC / 20);  // it slept in poll, it did not spin for 100 ms
  CHECK(exit_status(pid) == 0);
}

TEST_CASE("a regular file, an unsealed memfd and a memfd of the wrong size are refused with what is wrong") {
  auto regular_file = [](int s) {
    char path[] = "/tmp/corio-handoff-XXXXXX";
    const int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::unlink(path);
    REQUIRE(::ftruncate(fd, 1 << 16) == 0);
    send_with_ring(s, string_queue_header(), fd);
  };
  CHECK(refusal<corio::queue<std::string>>(regular_file) ==
        string_queue + ": the queue's memory: receive shm_region: the received fd is not a memfd "
                       "(F_GET_SEALS: Invalid argument): Invalid argument");
  auto unsealed = [](int s) {
    const int fd = ::memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    REQUIRE(::ftruncate(fd, 1 << 16) == 0);
    send_with_ring(s, string_queue_header(), fd);
  };
  CHECK(refusal<corio::queue<std::string>>(unsealed) ==
        string_queue + ": the queue's memory: receive shm_region: the received memfd is not sealed against "
                       "shrinking and growing (seals 0, need F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): its "
                       "sender could truncate it under our mapping: Invalid argument");
  auto wrong_size = [](int s) {
    auto h = header_for(corio::detail::handoff_kind::region, "", 0, 1);
    h.params[0] = 4096;
    const int fd = sealed_memfd(8192);
    send_raw(s, h, {fd});
    ::close(fd);
  };
  CHECK(refusal<corio::shm_region>(wrong_size) ==
        "corio::receive_handle<corio::shm_region>: the region: receive shm_region: the received memfd has 8192 "
        "bytes, expected 4096: Invalid argument");
}

TEST_CASE("a value arena that is not a sealed memfd of the ring's slots x the announced span is refused") {
  corio::queue<std::string> q(4);
  const caught_message real = catch_message(q);
  REQUIRE(real.fds.size() == 2);
  const std::uint64_t span = real.header.params[0];
  REQUIRE(span >= 4096);
  // The real ring with the fd make_arena() opens (closed after sending) and the header
  // changed by spoil.
  auto with_arena = [&](auto make_arena, auto spoil) {
    return [&real, make_arena, spoil](int s) {
      auto h = real.header;
      spoil(h);
      const int arena = make_arena();
      send_raw(s, h, {real.fds[0], arena});
      ::close(arena);
    };
  };
  const auto real_arena = [&real] { return ::dup(real.fds[1]); };
  const auto as_sent = [](auto&) {};
  const std::string arena_refused = string_queue + ": the queue's value arena: ";
  const auto regular = [] {
    char path[] = "/tmp/corio-handoff-XXXXXX";
    const int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::unlink(path);
    return fd;
  };
  CHECK(refusal<corio::queue<std::string>>(with_arena(regular, as_sent)) ==
        arena_refused + "the received fd is not a memfd (F_GET_SEALS: Invalid argument)");
  const auto unsealed = [] { return ::memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING); };
  CHECK(refusal<corio::queue<std::string>>(with_arena(unsealed, as_sent)) ==
        arena_refused + "the received memfd is not sealed against shrinking and growing (seals 0, need "
                        "F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): its sender could truncate it under our mapping");
  // A span larger than the file: every slot past the first would fault (SIGBUS) if believed.
  CHECK(refusal<corio::queue<std::string>>(with_arena([] { return sealed_memfd(4 * 4096); }, as_sent)) ==
        arena_refused + "the memfd has 16384 bytes, a ring of 4 slots with " + std::to_string(span) +
            " bytes each needs " + std::to_string(4 * span));
  CHECK(refusal<corio::queue<std::string>>(with_arena(real_arena, [](auto& h) { h.params[0] /= 2; })) ==
        arena_refused + "the memfd has " + std::to_string(4 * span) + " bytes, a ring of 4 slots with " +
            std::to_string(span / 2) + " bytes each needs " + std::to_string(2 * span));
  CHECK(refusal<corio::queue<std::string>>(with_arena(real_arena, [](auto& h) { h.params[0] = 5000; })) ==
        arena_refused + "the announced span of 5000 bytes per slot is not 0 or a power of two from 4096 to " +
            std::to_string(std::uint64_t{1} << 40) + " bytes");
  CHECK(refusal<corio::queue<std::string>>(with_arena(real_arena, [](auto& h) { h.params[1] = 100; })) ==
        arena_refused + "the announced 100 kept bytes per slot are not whole pages within the span of " +
            std::to_string(span) + " bytes");
  CHECK(refusal<corio::queue<std::string>>(with_arena(real_arena, [&](auto& h) { h.params[1] = 2 * span; })) ==
        arena_refused + "the announced " + std::to_string(2 * span) +
            " kept bytes per slot are not whole pages within the span of " + std::to_string(span) + " bytes");
  // Missing: only the ring's memfd, announced as one or as two.
  auto ring_only = [&](std::uint32_t announced) {
    return [&real, announced](int s) {
      auto h = real.header;
      h.fd_count = announced;
      send_raw(s, h, {real.fds[0]});
    };
  };
  CHECK(refusal<corio::queue<std::string>>(ring_only(2)) == string_queue + ": 1 fds arrived, the message announces 2");
  CHECK(refusal<corio::queue<std::string>>(ring_only(1)) ==
        string_queue + ": the message announces 1 fds, a queue has 2");
  // The real pair still goes through: the refusals were the spoiling's.
  CHECK(refusal<corio::queue<std::string>>(with_arena(real_arena, as_sent)) == "<accepted>");
  ::close(real.fds[0]);
  ::close(real.fds[1]);
}

TEST_CASE("a receiver whose RLIMIT_FSIZE is below the value arena's size refuses the queue instead of dying by SIGXFSZ") {
  corio::queue<std::string> q(4);
  auto [a, b] = unix_stream::pair();
  corio::send_handle(a, q);
  const caught_message real = catch_message(q);
  for (int fd : real.fds) ::close(fd);
  const std::uint64_t arena_bytes = 4 * real.header.params[0];
  const pid_t pid = fork_child([&, &b = b] {
    const rlimit small{1 << 20, 1 << 20};
    if (::setrlimit(RLIMIT_FSIZE, &small) != 0) return 11;
    try {
      (void)corio::receive_handle<corio::queue<std::string>>(b);
    } catch (const handoff_error& e) {
      const std::string want = string_queue + ": the queue's value arena: its " + std::to_string(arena_bytes) +
                               " bytes exceed this process's RLIMIT_FSIZE (1048576 bytes): storing a value there "
                               "would raise SIGXFSZ";
      if (e.what() == want) return 0;
      std::fprintf(stderr, "got: %s\n", e.what());
      return 12;
    }
    return 13;
  });
  CHECK(exit_status(pid) == 0);
}

TEST_CASE("a joinable_queue travels as three memfds; a missing task counter is refused") {
  corio::joinable_queue<int> q;
  const caught_message real = catch_message(q);
  const auto& h = real.header;
  const std::vector<int>& fds = real.fds;
  REQUIRE(fds.size() == 3);
  CHECK(h.fd_count == 3);
  const std::string joinable = "corio::receive_handle<corio::joinable_queue<int>>";
  CHECK(refusal<corio::joinable_queue<int>>([&](int s) { send_raw(s, h, {fds[0], fds[1]}); }) ==
        joinable + ": 2 fds arrived, the message announces 3");
  auto two = h;
  two.fd_count = 2;
  CHECK(refusal<corio::joinable_queue<int>>([&](int s) { send_raw(s, two, {fds[0], fds[1]}); }) ==
        joinable + ": the message announces 2 fds, a joinable_queue has 3");
  CHECK(refusal<corio::joinable_queue<int>>([&](int s) { send_raw(s, h, {fds[0], fds[1], fds[2]}); }) ==
        "<accepted>");
  for (int fd : fds) ::close(fd);
}

TEST_CASE("a process_mutex is refused where a process_event is expected: the object's own type is its tag") {
  corio::process_mutex m;
  CHECK(refusal<corio::process_event>([&](int fd) { corio::send_handle(unix_stream(::dup(fd)), m); }) ==
        "corio::receive_handle<corio::process_event>: type mismatch: the sender's process object carries "
        "corio::process_mutex, this receiver expects corio::process_event");
}

TEST_CASE("sealed memory that is too small or holds no ring is refused as a queue") {
  auto memfd_of = [](std::size_t bytes) {
    return [bytes](int s) { send_with_ring(s, string_queue_header(), sealed_memfd(bytes)); };
  };
  CHECK(refusal<corio::queue<std::string>>(memfd_of(100)) ==
        string_queue + ": corio::queue: the shared memory (100 bytes) is too small for a queue");
  CHECK(refusal<corio::queue<std::string>>(memfd_of(1 << 16)) ==
        string_queue + ": corio::mpmc_ring::attach: the memory holds no formatted ring");
}

TEST_CASE("a well-formed ring without room for the value arena's words after it is refused as a queue") {
  // The region of a queue, cut off right after its ring: every slot's arena word would lie
  // past the mapping.
  const std::size_t ring_end = sizeof(corio::detail::queue_control) + corio::mpmc_ring::bytes_for(4, 256);
  auto region = corio::shm_region::create(ring_end, "handoff-test");
  (void)corio::mpmc_ring::format(std::span<std::byte>(region.data() + sizeof(corio::detail::queue_control),
                                                      ring_end - sizeof(corio::detail::queue_control)),
                                 4, 256);
  auto no_words = [&](int s) {
    auto h = string_queue_header();  // span 0 and keep 0: an arena of 0 bytes fits 4 slots
    const int arena = sealed_memfd(0);
    send_raw(s, h, {region.fd(), arena});
    ::close(arena);
  };
  CHECK(refusal<corio::queue<std::string>>(no_words) ==
        string_queue + ": corio::queue: the shared memory (" + std::to_string(ring_end) +
            " bytes) has no room for the value arena's words after a ring of 4 slots (need " +
            std::to_string(ring_end + 4 * sizeof(std::uint64_t)) + ")");
}

TEST_CASE("a queue of another element type, another kind of object or a foreign message is refused") {
  corio::queue<int> ints;
  CHECK(refusal<corio::queue<std::string>>([&](int s) { corio::send_handle(unix_stream(::dup(s)), ints); }) ==
        string_queue + ": type mismatch: the sender's queue carries int, this receiver expects "
                       "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >");
  auto region = corio::shm_region::create(4096, "handoff-test");
  CHECK(refusal<corio::queue<std::string>>([&](int s) { corio::send_handle(unix_stream(::dup(s)), region); }) ==
        string_queue + ": the peer sent a shm_region, expected a queue");
  auto garbage = spoiled_queue_header([](auto& h) { h.magic = 0x0123456789abcdefULL; });
  CHECK(refusal<corio::queue<std::string>>(garbage) ==
        string_queue + ": not a corio handoff message (the first 8 bytes are not \"corioHO1\": something else "
                       "wrote to the socket)");
  auto future_version = [](int s) {
    auto h = string_queue_header();
    h.version = 9;
    send_raw(s, h, {});
  };
  CHECK(refusal<corio::queue<std::string>>(future_version) ==
        string_queue + ": handoff version 9, this program speaks 2");
  auto version_1 = [](int s) {  // what a sender from before the value arena wrote: one memfd
    auto h = string_queue_header(1);
    h.version = 1;
    const int fd = sealed_memfd(1 << 16);
    send_raw(s, h, {fd});
    ::close(fd);
  };
  CHECK(refusal<corio::queue<std::string>>(version_1) ==
        string_queue + ": handoff version 1, this program speaks 2");
}

TEST_CASE("a message without its fd, with an fd too many, cut short, or never sent is refused") {
  CHECK(refusal<corio::queue<std::string>>([](int s) { send_raw(s, string_queue_header(), {}); }) ==
        string_queue + ": no fd was attached to the message");
  auto memfds = [](std::size_t n) {
    return [n](int s) {
      std::vector<int> fds;
      for (std::size_t i = 0; i < n; ++i) fds.push_back(sealed_memfd(4096));
      send_raw(s, string_queue_header(), fds);
      for (int fd : fds) ::close(fd);
    };
  };
  CHECK(refusal<corio::queue<std::string>>(memfds(1)) == string_queue + ": 1 fds arrived, the message announces 2");
  CHECK(refusal<corio::queue<std::string>>(memfds(3)) == string_queue + ": 3 fds arrived, the message announces 2");
  CHECK(refusal<corio::queue<std::string>>(memfds(4)) ==
        string_queue + ": more fds arrived than the message announces (2)");
  auto six_fds = [](int s) {  // more than the control buffer holds: the kernel truncates
    std::vector<int> fds;
    for (int i = 0; i < 6; ++i) fds.push_back(sealed_memfd(4096));
    send_raw(s, string_queue_header(), fds);
    for (int fd : fds) ::close(fd);
  };
  CHECK(refusal<corio::queue<std::string>>(six_fds) ==
        string_queue + ": more fds arrived than the message announces (2)");
  auto no_credentials = [](int s) {
    const int a = sealed_memfd(4096), b = sealed_memfd(4096);
    send_raw(s, string_queue_header(), {a, b}, sizeof(corio::detail::handoff_header), false);
    ::close(a);
    ::close(b);
  };
  CHECK(refusal<corio::queue<std::string>>(no_credentials) ==
        string_queue + ": the message carries no sender credentials (SCM_CREDENTIALS), or the sender's pid is not "
                       "visible in this pid namespace: dead-process recovery needs to know the sender by pid");
  auto announces_one = [](int s) { send_raw(s, string_queue_header(1), {}); };
  CHECK(refusal<corio::queue<std::string>>(announces_one) ==
        string_queue + ": the message announces 1 fds, a queue has 2");
  auto truncated = [](int s) {
    send_raw(s, string_queue_header(), {}, 100);
    ::shutdown(s, SHUT_WR);
  };
  CHECK(refusal<corio::queue<std::string>>(truncated) ==
        string_queue + ": the message was cut short: 100 of 192 bytes arrived before the peer closed the socket");
  CHECK(refusal<corio::queue<std::string>>([](int s) { ::shutdown(s, SHUT_WR); }) ==
        string_queue + ": the peer closed the socket before sending anything");
}

TEST_CASE("a connection must arrive as a Unix stream socket with valid modes, and be sent whole") {
  const std::string connection = "corio::receive_handle<corio::connection<int>>";
  auto header = [](std::uint64_t modes) {
    auto h = header_for(corio::detail::handoff_kind::connection, typeid(int).name(), sizeof(int), 1);
    h.params[0] = modes;
    return h;
  };
  auto a_pipe = [&](int s) {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    send_raw(s, header(3), {p[0]});
    ::close(p[0]);
    ::close(p[1]);
  };
  CHECK(refusal<corio::connection<int>>(a_pipe) == connection + ": the connection: the received fd is not a socket");
  auto datagram = [&](int s) {
    int d[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, d) == 0);
    send_raw(s, header(3), {d[0]});
    ::close(d[0]);
    ::close(d[1]);
  };
  CHECK(refusal<corio::connection<int>>(datagram) ==
        connection + ": the connection: the received fd is not a stream socket (type 2)");
  auto bad_modes = [&](int s) {
    auto [x, y] = unix_stream::pair();
    send_raw(s, header(7), {x.fd()});
  };
  CHECK(refusal<corio::connection<int>>(bad_modes) ==
        connection + ": the connection's modes 7 are not send, receive or both");

  auto [a, b] = corio::make_pipe<int>();
  b.send(1);
  b.send(2);
  CHECK(a.recv() == 1);  // 2 now waits in a's buffer
  auto [s1, s2] = unix_stream::pair();
  CHECK_THROWS_WITH_AS(corio::send_handle(s1, a),
                       "corio::send_handle: the connection holds 12 received bytes not yet read as values; they "
                       "would be lost",
                       std::logic_error);
  a.close();
  CHECK_THROWS_WITH_AS(corio::send_handle(s1, a), "corio::send_handle: the connection is closed", std::logic_error);
}

// Whether this process may make a pid namespace (root, or a user namespace): probed in a
// child, so this process never changes namespace.
// Plain fork and waitpid: this runs while doctest registers the case, before main.
bool can_unshare_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(::unshare(CLONE_NEWPID) == 0 ? 0 : 77);
  int status = 0;
  return pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

CORIO_TEST_IF("a queue from a process in another pid namespace is refused, a region from there is not",
              can_unshare_pid(), "unshare(CLONE_NEWPID) is refused here (needs root or a user namespace)") {
  auto [mine, theirs] = unix_stream::pair();
  // An intermediate child enters a new pid namespace (unshare affects its later forks
  // only), and its own child, pid 1 there, sends. This process never changes namespace.
  const pid_t middle = fork_child([&, &mine = mine] {
    if (::unshare(CLONE_NEWPID) != 0) return 77;
    const pid_t sender = fork_child([&] {
      corio::queue<int> q;
      corio::send_handle(mine, q);
      corio::send_handle(mine, corio::shm_region::create(4096, "handoff-test"));
      return ::getpid() == 1 ? 0 : 10;
    });
    return exit_status(sender);
  });
  REQUIRE(exit_status(middle) == 0);
  mine.close();
  std::string message = "<accepted>";
  try {
    (void)corio::receive_handle<corio::queue<int>>(theirs);
  } catch (const handoff_error& e) {
    message = e.what();
  }
  const std::string head = "corio::receive_handle<corio::queue<int>>: the sender is in another pid namespace (it "
                           "calls itself pid 1, here it is pid ";
  const std::string tail = "): dead-process recovery names processes by pid and would free the claims of live ones";
  CHECK(message.starts_with(head));
  CHECK(message.ends_with(tail));
  CHECK(message != head + "1" + tail);
  CHECK(corio::receive_handle<corio::shm_region>(theirs).size() == 4096);
}

TEST_CASE("handoff_from_parent refuses a missing, malformed or wrong CORIO_HANDOFF_FD") {
  ::unsetenv("CORIO_HANDOFF_FD");
  CHECK_THROWS_WITH_AS((void)corio::handoff_from_parent(),
                       "corio::handoff_from_parent: CORIO_HANDOFF_FD is not set (this program was not started by "
                       "corio::child_handoff::spawn, or the handoff socket was taken already)",
                       handoff_error);
  ::setenv("CORIO_HANDOFF_FD", "3x", 1);
  CHECK_THROWS_WITH_AS((void)corio::handoff_from_parent(),
                       "corio::handoff_from_parent: CORIO_HANDOFF_FD=\"3x\" is not an fd number above 2",
                       handoff_error);
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  ::setenv("CORIO_HANDOFF_FD", std::to_string(p[0]).c_str(), 1);
  CHECK_THROWS_WITH_AS((void)corio::handoff_from_parent(),
                       ("corio::handoff_from_parent: fd " + std::to_string(p[0]) +
                        " (CORIO_HANDOFF_FD) is not a socket").c_str(),
                       handoff_error);
  CHECK(std::getenv("CORIO_HANDOFF_FD") == nullptr);  // taken: a second call cannot reuse it
  ::close(p[0]);
  ::close(p[1]);
}

TEST_CASE("2,000 randomly spoiled copies of a real queue handoff are each refused, no fd leaked") {
  corio::queue<std::string> q(4);
  const caught_message caught = catch_message(q);
  REQUIRE(caught.fds.size() == 2);
  const corio::detail::handoff_header real = caught.header;
  // params[1], the kept bytes per slot, is the sender's choice: any whole number of pages
  // within the span is a valid message, so flips there may make one (refusals of the
  // invalid ones: "a value arena that is not ...").
  const std::size_t keep_at = offsetof(corio::detail::handoff_header, params) + sizeof(std::uint64_t);
  const auto seed = std::random_device{}();
  CAPTURE(seed);
  std::mt19937 rng(seed);
  auto [a, b] = unix_stream::pair();
  const std::size_t before = open_fd_count();
  int accepted = 0, refused = 0;
  for (int round = 0; round < 2000; ++round) {
    auto spoiled = real;
    auto* bytes = reinterpret_cast<unsigned char*>(&spoiled);
    const int flips = std::uniform_int_distribution<int>(1, 3)(rng);
    // Distinct bytes, each changed: two flips of one byte could cancel out.
    std::vector<std::size_t> at;
    for (std::size_t i = 0; i < sizeof spoiled; ++i)
      if (i < keep_at || i >= keep_at + sizeof(std::uint64_t)) at.push_back(i);
    std::shuffle(at.begin(), at.end(), rng);
    for (int f = 0; f < flips; ++f)
      bytes[at[static_cast<std::size_t>(f)]] ^= static_cast<unsigned char>(std::uniform_int_distribution<int>(1, 255)(rng));
    const auto fds = std::uniform_int_distribution<int>(0, 9)(rng) == 0 ? std::vector<int>{}
                                                                      : std::vector<int>{caught.fds[0], caught.fds[1]};
    send_raw(a.fd(), spoiled, fds);
    // Every byte is checked: a field, or zero where the sender writes nothing.
    try {
      (void)corio::receive_handle<corio::queue<std::string>>(b);
      ++accepted;
    } catch (const handoff_error&) {
      ++refused;
    }
  }
  CHECK(open_fd_count() == before);  // nothing received was leaked
  CHECK(accepted == 0);
  CHECK(refused == 2000);
  // The unspoiled message, sent the same way, goes through: the refusals were the spoiling's.
  send_raw(a.fd(), real, {caught.fds[0], caught.fds[1]});
  auto got = corio::receive_handle<corio::queue<std::string>>(b);
  got.put("through the copy");
  CHECK(q.get(false) == "through the copy");
  got.put(std::string(100'000, 'v'));  // through the arena
  CHECK(q.get(false) == std::string(100'000, 'v'));
  ::close(caught.fds[0]);
  ::close(caught.fds[1]);
}

TEST_CASE("non-zero bytes where a corio sender writes nothing are refused as a corrupt header") {
  auto params_set = spoiled_queue_header([](auto& h) { h.params[2] = 7; });
  CHECK(refusal<corio::queue<std::string>>(params_set) ==
        string_queue + ": the header's unused bytes are not zero (a corio sender zero-fills them: this message is "
                       "corrupt)");
  auto name_tail = spoiled_queue_header([](auto& h) { h.type_name[sizeof h.type_name - 1] = 'x'; });
  CHECK(refusal<corio::queue<std::string>>(name_tail) ==
        string_queue + ": the header's unused bytes are not zero (a corio sender zero-fills them: this message is "
                       "corrupt)");
}
