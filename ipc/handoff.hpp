#pragma once
// corio::send_handle / receive_handle — hand a queue, a pipe end, a shared region or a
// process lock to a process that was NOT fork()ed from its creator: an unrelated program
// connected over a Unix-domain socket, or a program started through corio::subprocess.
//
//     // server: creates the queue, hands it to whoever connects
//     corio::queue<std::string> q;
//     corio::unix_stream s = co_await listener.accept();
//     corio::send_handle(s, q);
//     q.put("hello");
//
//     // client, a separate executable
//     corio::unix_stream s = co_await corio::unix_stream::connect(corio::address::parse("unix:" + path));
//     auto q = co_await corio::async_receive_handle<corio::queue<std::string>>(s);
//     std::string v = q.get();                        // "hello"
//
//     // a child started with the queue: inheritance
//     corio::child_handoff h;                         // in the parent
//     h.send(q);
//     corio::subprocess::child c = h.spawn({"./worker"});
//     auto q = corio::receive_handle<corio::queue<std::string>>(corio::handoff_from_parent());  // in ./worker
//
// What travels: the object's file descriptors (SCM_RIGHTS) with a fixed 192-byte header
// (detail/handoff_message.hpp) naming the kind of object, the element type and the sizes,
// plus the sender's pid (SCM_CREDENTIALS, checked by the kernel). Nothing else is needed:
// a queue, a joinable_queue's counter, a process lock and a shared value live entirely in
// sealed memfds (their wake-ups are futexes in that memory, no eventfd), and a
// connection<T> is one end of a Unix socketpair. The receiver maps the same memory (or
// holds the same socket) and the object behaves as in a fork()ed child: same contract, same
// performance.
//
//     object                     fds                    receive_handle<...> refuses (handoff_error) when
//     shm_region                 memfd                  not a sealed memfd, size != announced
//     queue<T>                   memfd, memfd           as region; too small; no ring laid out in it;
//                                                        value arena (2nd memfd) not a sealed memfd,
//                                                        size != ring slots x announced span
//     joinable_queue<T>          memfd, memfd, memfd    as queue; counter region too small
//     connection<T>              socket                 not an AF_UNIX SOCK_STREAM socket; bad modes
//     process_mutex, _event, ..  memfd                  as region; smaller than the object's state
//     shared_value<T> / _array   memfd                  as region; element count does not fit
// and for every kind: not a corio handoff (magic), another version, another kind of object,
// another element type (queue<std::string> sent, queue<int> expected: the message names
// both), fds missing, more fds than announced, the message cut short, the peer closed first.
//
// Trust (docs/design.md, "Trust model"): the peer may lie in any field; nothing it says is
// used before it is checked, and every fd that arrived is closed when a check fails. What a
// peer holding the memory can still do after a successful handoff is what any process
// sharing it can do (write bad bytes): the structures check what they read, as they do
// between fork()ed processes (mpmc_ring.hpp, spsc_ring.hpp).
//
// Dead processes. A queue frees the ring slot of a process that died inside a put or a get,
// and a process lock is taken over from a dead holder (mpmc_ring.hpp "Owners",
// detail/process_owner.hpp): both name the process by its pid and start time and look it up
// in /proc. That works for any process of the machine, child or not — a zombie waiting for
// an unrelated parent counts as dead, a pid owned by another user (kill gives EPERM) as
// alive — as long as every process sees the same pids, i.e. shares one pid namespace. A
// process in another pid namespace (a container) would name itself by a pid that means
// another process here. So receive_handle compares the pid the sender wrote with the pid the
// kernel reports for it in the receiver's namespace (SCM_CREDENTIALS) and refuses a queue,
// a joinable_queue or a process object (locks, and with them every process_* type and
// shared value, to keep one rule) when they differ. Regions and connections do not depend
// on pids and cross pid namespaces freely.
//
// Ownership: the sender keeps its handle; both now share the object. A connection<T> end
// that was sent stays open in the sender too: close it there, or the peer of that end
// never sees end of stream (Python's rule for pipe ends). Sending a connection that holds
// received bytes not yet read as values throws std::logic_error (they would be lost).
//
// The receiver turns SO_PASSCRED on for the time of the receive (so that the kernel reports
// the sender's pid) and puts it back as it was.
//
// Blocking: send_handle and receive_handle block the calling thread (one small sendmsg;
// a recvmsg until the message arrives); async_receive_handle waits inside a corio loop. The
// socket may be any connected Unix stream socket (unix_stream, a socketpair end) and may be
// used for other traffic before and after, as long as nothing else reads while a
// receive runs.
//
// Inheritance: child_handoff makes a socketpair, sends the handles on its end, and spawn()
// starts the program with the other end as an inherited fd (subprocess::options::pass_fd)
// whose number is in the environment variable CORIO_HANDOFF_FD. The child calls
// handoff_from_parent() once, then receive_handle in the order the parent sent. Why a
// socket rather than the memfds themselves: the same message, checks and type tag as
// between unrelated programs, any number of objects, and the parent may send before or
// after the start.
//
// Errors: handoff_error (the peer's doing, see above), std::system_error (the socket
// failed), std::logic_error (sending a closed or half-read connection, a view of user
// memory, spawning twice).

#include <sys/socket.h>

#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../coro/task.hpp"
#include "../runtime/file_ops.hpp"
#include "../runtime/stream.hpp"
#include "../runtime/subprocess.hpp"
#include "detail/demangle.hpp"
#include "detail/handoff_message.hpp"
#include "joinable_queue.hpp"
#include "pipe.hpp"
#include "queue.hpp"
#include "shm_region.hpp"

namespace corio {

namespace detail {

// How each object is taken apart for sending and rebuilt from a checked message.
template <class Object>
struct handoff_traits {
  static_assert(sizeof(Object) == 0,
                "corio::send_handle / receive_handle: this type cannot be handed to another process "
                "(queue<T>, joinable_queue<T>, connection<T>, shm_region, process locks and shared values can)");
};

// Runs make(), turning a refusal by the object's constructor (memory too small, no ring
// laid out in it) into handoff_error naming the receiving call.
template <class Make>
auto built_or_refused(const received_handoff& m, Make make) -> decltype(make()) {
  try {
    return make();
  } catch (...) {
    rethrow_as_handoff_error(m);
  }
}

// What the header says about each kind of object: its kind, how many fds it travels with,
// whether its dead-process recovery names processes by pid (see "Dead processes"), and
// the type that must match on both sides.
template <handoff_kind Kind, std::uint32_t Fds, bool PidBound, class Element>
struct handoff_shape {
  static constexpr handoff_kind kind = Kind;
  static constexpr std::uint32_t fd_count = Fds;
  static constexpr bool pid_bound = PidBound;
  using element = Element;
};

template <>
struct handoff_traits<shm_region> : handoff_shape<handoff_kind::region, 1, false, void> {
  static handoff_parts parts(const shm_region& r) { return {{r.fd(), -1, -1}, 1, {r.size()}}; }
  static shm_region rebuild(received_handoff& m) { return m.take_region(0, "the region"); }
};

// A queue travels as its ring's memfd and its value arena's (detail/value_arena.hpp),
// with the arena's span and kept bytes per slot; the arena is checked against the ring
// (its size is slot count x span) only once the ring is known to be well formed.
inline handoff_parts queue_parts(const queue_core& core) {
  const value_arena& arena = core.arena();
  return {{core.region().fd(), arena.fd(), -1}, 2, {arena.span(), arena.keep()}};
}
inline std::shared_ptr<queue_core> rebuilt_queue_core(received_handoff& m) {
  shm_region ring = m.take_region(0, "the queue's memory");
  return built_or_refused(
      m, [&] { return std::make_shared<queue_core>(std::move(ring), m.fd(1), m.header().params[0], m.header().params[1]); });
}

template <class T>
struct handoff_traits<queue<T>> : handoff_shape<handoff_kind::queue, 2, true, T> {
  static handoff_parts parts(const queue<T>& q) { return queue_parts(*q.core_); }
  static queue<T> rebuild(received_handoff& m) { return queue<T>(rebuilt_queue_core(m)); }
};

template <class T>
struct handoff_traits<joinable_queue<T>> : handoff_shape<handoff_kind::joinable_queue, 3, true, T> {
  static handoff_parts parts(const joinable_queue<T>& q) {
    handoff_parts p = queue_parts(*q.queue_.core_);
    p.fds[2] = q.core_->region().fd();
    p.fd_count = 3;
    return p;
  }
  static joinable_queue<T> rebuild(received_handoff& m) {
    std::shared_ptr<queue_core> ring = rebuilt_queue_core(m);
    shm_region counter = m.take_region(2, "the task counter's memory");
    return built_or_refused(
        m, [&] { return joinable_queue<T>(queue<T>(std::move(ring)), std::make_shared<joinable_core>(std::move(counter))); });
  }
};

template <class T>
struct handoff_traits<connection<T>> : handoff_shape<handoff_kind::connection, 1, false, T> {
  static handoff_parts parts(const connection<T>& c) {
    if (c.closed())
      throw std::logic_error("corio::send_handle: the connection is closed");
    if (c.end_.buffered() != 0)
      throw std::logic_error("corio::send_handle: the connection holds " + std::to_string(c.end_.buffered()) +
                             " received bytes not yet read as values; they would be lost");
    return {{c.fd(), -1, -1}, 1, {c.end_.modes()}};
  }
  static connection<T> rebuild(received_handoff& m) {
    const std::uint64_t modes = m.header().params[0];
    constexpr std::uint64_t both = pipe_end::sends | pipe_end::receives;
    if (modes == 0 || (modes & ~both) != 0)
      m.refuse("the connection's modes " + std::to_string(modes) + " are not send, receive or both");
    const int fd = m.take_unix_stream_socket(0, "the connection");
    return connection<T>(pipe_end(fd, static_cast<unsigned>(modes)));
  }
};

// Process locks, events, barriers, shared values: a region at their start, adopted by
// their constructor from shm_region, which checks the size.
template <class Object>
concept region_backed = requires(const Object& o) {
  { o.region() } -> std::same_as<const shm_region&>;
} && std::is_constructible_v<Object, shm_region>;

// The object's own type is the element: a process_event is not a process_mutex.
template <region_backed Object>
struct handoff_traits<Object> : handoff_shape<handoff_kind::shared_state, 1, true, Object> {
  static handoff_parts parts(const Object& o) { return {{o.region().fd(), -1, -1}, 1, {o.region().size()}}; }
  static Object rebuild(received_handoff& m) {
    shm_region r = m.take_region(0, "the object's memory");
    return built_or_refused(m, [&] { return Object(std::move(r)); });
  }
};

template <class Object>
handoff_expectation expectation_for() {
  using traits = handoff_traits<Object>;
  return {traits::kind, traits::fd_count, type_identity_of<typename traits::element>(), traits::pid_bound,
          std::string("corio::receive_handle<") + demangled_name(typeid(Object).name()).c_str() + ">"};
}

task<received_handoff> async_receive_message(handoff_reader reader);

}  // namespace detail

// Sends `object` over a connected Unix stream socket; the receiver calls
// receive_handle<Object>. Blocks the thread for one sendmsg. std::system_error when the
// socket fails (EPIPE when the peer is gone), std::logic_error for a connection that is
// closed or half-read and for a process object that is a view of user memory.
template <class Object>
void send_handle(const unix_stream& to, const Object& object) {
  using traits = detail::handoff_traits<Object>;
  detail::send_handoff(to.fd(), traits::kind, detail::type_identity_of<typename traits::element>(),
                       traits::parts(object),
                       std::string("corio::send_handle<") + detail::demangled_name(typeid(Object).name()).c_str() + ">");
}

// Receives one object sent with send_handle, blocking the thread until it arrives. The
// object shares the sender's memory (or socket) from then on. Throws handoff_error when what
// arrived is not an Object of this element type (see the table at the top; the fds that
// came are closed), std::system_error when the socket fails.
template <class Object>
[[nodiscard]] Object receive_handle(const unix_stream& from) {
  detail::handoff_reader reader(from.fd(), detail::expectation_for<Object>());
  while (!reader.step(0))
    reader.wait_readable();  // more to come (or a non-blocking socket had nothing yet)
  detail::received_handoff m = reader.finish();
  return detail::handoff_traits<Object>::rebuild(m);
}

// receive_handle inside a corio loop: the coroutine, not the thread, waits for the message.
// `from` must outlive the task. Also throws operation_cancelled (the ambient stop token).
template <class Object>
[[nodiscard]] task<Object> async_receive_handle(const unix_stream& from) {
  detail::received_handoff m =
      co_await detail::async_receive_message(detail::handoff_reader(from.fd(), detail::expectation_for<Object>()));
  co_return detail::handoff_traits<Object>::rebuild(m);
}

// The environment variable that tells a child started by child_handoff::spawn the number of
// its end of the handoff socket.
inline constexpr const char* handoff_fd_variable = "CORIO_HANDOFF_FD";

// The parent's side of handing objects to a program it starts (see "Inheritance").
// Used by one thread; destroying it closes the parent's end (the child then reads end of
// stream after the last handle).
class child_handoff {
 public:
  child_handoff();

  // send_handle on the parent's end; before spawn() the message waits in the socket.
  template <class Object>
  void send(const Object& object) {
    send_handle(parent_end_, object);
  }
  // Starts the program (subprocess::spawn) with the child's end passed as its fd
  // 3 + opts.passed_fd_count() and CORIO_HANDOFF_FD set to that number, then closes this
  // process's copy of the child's end. Once per child_handoff (std::logic_error after).
  [[nodiscard]] subprocess::child spawn(std::vector<std::string> argv, subprocess::options opts = {});

  // The parent's end, for traffic of its own after the handles (the child's replies).
  [[nodiscard]] unix_stream& stream() noexcept { return parent_end_; }

 private:
  unix_stream parent_end_;
  unix_stream child_end_;
};

// In a program started by child_handoff::spawn: takes the inherited socket named by
// CORIO_HANDOFF_FD (and removes the variable, so the program's own children do not see
// it; call it before starting threads, like any setenv). The fd becomes close-on-exec.
// handoff_error when the variable is missing or malformed, or the fd is not an AF_UNIX
// stream socket.
[[nodiscard]] unix_stream handoff_from_parent();

}  // namespace corio
