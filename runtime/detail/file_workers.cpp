#include "file_workers.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace corio::detail {
namespace {

int result(long r) noexcept { return r >= 0 ? static_cast<int>(r) : -errno; }

void* pointer(std::uint64_t v) noexcept { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(v)); }

constexpr unsigned worker_threads = 2;

}  // namespace

int run_blocking(const io_uring_sqe& sqe) noexcept {
  void* const addr = pointer(sqe.addr);
  const auto* path = static_cast<const char*>(addr);
  switch (sqe.opcode) {
    case IORING_OP_READ:
    case IORING_OP_READV:
    case IORING_OP_WRITE:
    case IORING_OP_WRITEV: {
      iovec one{addr, sqe.len};
      const bool vectored = sqe.opcode == IORING_OP_READV || sqe.opcode == IORING_OP_WRITEV;
      const auto* iov = vectored ? static_cast<const iovec*>(addr) : &one;
      const int count = vectored ? static_cast<int>(sqe.len) : 1;
      const auto offset = static_cast<off_t>(sqe.off);
      const int flags = static_cast<int>(sqe.rw_flags);
      const bool reading = sqe.opcode == IORING_OP_READ || sqe.opcode == IORING_OP_READV;
      return result(reading ? ::preadv2(sqe.fd, iov, count, offset, flags)
                            : ::pwritev2(sqe.fd, iov, count, offset, flags));
    }
    case IORING_OP_OPENAT:
      return result(::openat(sqe.fd, path, static_cast<int>(sqe.open_flags), static_cast<mode_t>(sqe.len)));
    case IORING_OP_STATX:
      return result(::statx(sqe.fd, path, static_cast<int>(sqe.statx_flags), sqe.len,
                            static_cast<struct statx*>(pointer(sqe.off))));
    case IORING_OP_UNLINKAT: return result(::unlinkat(sqe.fd, path, static_cast<int>(sqe.unlink_flags)));
    case IORING_OP_FSYNC:
      return result((sqe.fsync_flags & IORING_FSYNC_DATASYNC) ? ::fdatasync(sqe.fd) : ::fsync(sqe.fd));
    case IORING_OP_CLOSE: return result(::close(sqe.fd));
    case IORING_OP_SHUTDOWN: return result(::shutdown(sqe.fd, static_cast<int>(sqe.len)));
    default: return -EINVAL;
  }
}

file_workers::file_workers(int done_fd) : done_fd_(done_fd) {
  for (unsigned i = 0; i < worker_threads; ++i) threads_.emplace_back([this] { work(); });
}

file_workers::~file_workers() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void file_workers::push(const io_uring_sqe& sqe, std::uint64_t link_user_data, bool has_link) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back({sqe, link_user_data, has_link});
  }
  wake_.notify_one();
}

std::size_t file_workers::take(std::vector<completion>& out) {
  std::lock_guard lock(mutex_);
  out.insert(out.end(), done_.begin(), done_.end());
  done_.clear();
  return std::exchange(finished_, 0);
}

void file_workers::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, and nothing left
    const job j = jobs_.front();
    jobs_.pop_front();
    lock.unlock();
    const int res = run_blocking(j.sqe);
    lock.lock();
    done_.push_back({j.sqe.user_data, res, 0});
    if (j.has_link) done_.push_back({j.link_user_data, -ECANCELED, 0});
    ++finished_;
    // Under the mutex, so the loop's take() after this wake-up sees the job.
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(done_fd_, &one, sizeof one);
  }
}

}  // namespace corio::detail
