#pragma once
// fd_lifetime (internal): a generation per fd number, moved on when a corio socket adopts
// the fd and again just before it closes or releases it, so that the epoll backend can
// keep such an fd registered for good (edge-triggered: no epoll_ctl per wait, as Asio's
// and Seastar's reactors do for the sockets they own) and still find out, without a
// system call, that the number has come to name another file.
//
// Why it is needed: epoll forgets a file when its last descriptor closes, and the number
// is then reused by the next socket, pipe or file. A backend that trusted the old
// registration would wait forever on the new file. An ONESHOT registration re-armed with
// EPOLL_CTL_MOD at each wait finds that out (ENOENT), at the price of one system call per
// wait: a fifth of a 64-byte echo round trip's system calls. corio's stream sockets
// (stream_socket: tcp_stream, unix_stream) report their adoption and their close here;
// every other fd (a pipe, a listener, a user's raw fd) stays unknown here, and the
// backend keeps re-arming it.
//
// generation(fd) is odd while a corio socket owns fd and even otherwise; 0 for a number
// never seen, a negative one, or one of 2^20 and above (the table's size: such fds are
// simply unknown). A later owner of the same number always gets another odd value.
//
// Memory ordering: acq_rel read-modify-writes and acquire loads. The owner's change comes
// before its close(2) and the next owner's after its socket(2) / accept(2) returned the
// number; the kernel's descriptor table orders those two, and the backend only sees the
// number in a request made after the new owner adopted it.

#include <cstdint>

namespace corio::detail::fd_lifetime {

std::uint32_t generation(int fd) noexcept;
// A corio socket now owns fd.
void adopted(int fd) noexcept;
// Its owner is about to close fd, or gives it up (release()).
void closing(int fd) noexcept;

}  // namespace corio::detail::fd_lifetime
