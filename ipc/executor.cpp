#include "executor.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "../coro/detail/trampoline.hpp"
#include "../coro/stop.hpp"
#include "../runtime/detail/cpu_affinity.hpp"
#include "../runtime/errors.hpp"
#include "../runtime/event.hpp"
#include "../runtime/loop.hpp"
#include "../runtime/timer.hpp"
#include "detail/executor_shared.hpp"
#include "detail/fork_thread.hpp"
#include "event_count.hpp"
#include "process.hpp"
#include "shm_region.hpp"
#include "spsc_ring.hpp"

namespace corio {
namespace detail {
namespace {

void noop_exit(void*, std::exception_ptr) noexcept {}

}  // namespace

// ---- the parent ------------------------------------------------------------------------------

struct executor_worker {
  executor_worker(std::size_t i, shm_region r, std::size_t ring_memory)
      : index(i),
        region(std::move(r)),
        requests(spsc_ring::format(executor_views(region, ring_memory).requests)),
        replies(spsc_ring::format(executor_views(region, ring_memory).replies)),
        request_ready(executor_views(region, ring_memory).shared->request_ready),
        request_room(executor_views(region, ring_memory).shared->request_room),
        reply_ready(executor_views(region, ring_memory).shared->reply_ready),
        reply_room(executor_views(region, ring_memory).shared->reply_room) {}

  std::size_t index;
  shm_region region;
  spsc_ring requests;  // producer side
  spsc_ring replies;   // consumer side
  event_count request_ready, request_room, reply_ready, reply_room;
  std::optional<process> proc;
  pid_t pid = 0;
  int cpu = -1;  // pinned to this CPU (-1: not pinned); a replacement gets the same

  // Pending calls by slot; request id = slot + 1 (0 is the exit request).
  std::vector<executor_pending*> slots;
  std::vector<std::uint32_t> free_slots;
  std::size_t pending = 0;
  std::size_t room_waiters = 0;
  bool dirty = false;  // requests written, not yet published
  bool lost = false;  // dead and not replaced: calls routed here fail with lost_what
  std::string lost_what;
  bool exit_requested = false;  // shutdown() sent the exit request: its end is no death
  std::stop_source reader_stop;
  std::stop_token reader_token = reader_stop.get_token();
  bool reader_running = false;
  bool watching = false;

  std::uint32_t take_slot() {
    if (!free_slots.empty()) {
      const std::uint32_t s = free_slots.back();
      free_slots.pop_back();
      return s;
    }
    slots.push_back(nullptr);
    return static_cast<std::uint32_t>(slots.size() - 1);
  }

  // Writes a request and registers p; false (nothing registered) when the ring is full.
  bool write(std::vector<std::byte>& frame, executor_pending& p) {
    const std::uint32_t slot = take_slot();
    const std::uint64_t id = std::uint64_t{slot} + 1;
    std::memcpy(frame.data(), &id, sizeof id);
    if (!requests.try_write(frame)) {
      free_slots.push_back(slot);
      return false;
    }
    slots[slot] = &p;
    ++pending;
    dirty = true;
    return true;
  }

  void flush() noexcept {
    if (!dirty) return;
    dirty = false;
    requests.publish();
    request_ready.notify_all();
  }
};

struct executor_state : std::enable_shared_from_this<executor_state> {
  // Forks every worker (see fork_thread.hpp); declared first so it is destroyed last,
  // after the workers: its exit would SIGKILL any worker still running.
  std::unique_ptr<fork_thread> forker = std::make_unique<fork_thread>();
  executor_options options;
  std::size_t ring_memory = 0;
  std::vector<std::unique_ptr<executor_worker>> workers;
  loop* attached = nullptr;
  bool closed = false;
  bool destroying = false;   // the executor's destructor ran: dead workers are not replaced
  bool in_dispatch = false;  // resuming submitters: the dispatcher publishes afterwards
  bool flush_scheduled = false;
  std::size_t pending = 0;   // over all workers, including calls waiting for room
  std::size_t watchers = 0;  // watcher coroutines running
  event idle;                // set while closed and nothing is pending
  event all_exited;          // set when the last watcher ended

  void flush_all() noexcept {
    for (auto& w : workers) w->flush();
  }
  void call_finished() noexcept {
    if (--pending == 0 && closed) idle.set();
  }
  void finish_calls(std::span<const std::coroutine_handle<>> wake, std::size_t without_waiter);
  void attach();
  void schedule_flush();
  void start_reader(executor_worker& w);
  void start_process(executor_worker& w);
};

// Ends calls whose outcome is set: resumes their submitters in order, then publishes the
// requests they wrote meanwhile in one go (unless an outer dispatch will).
void executor_state::finish_calls(std::span<const std::coroutine_handle<>> wake, std::size_t without_waiter) {
  const bool outer = in_dispatch;
  in_dispatch = true;
  for (auto h : wake) {
    call_finished();
    resume(h);
  }
  for (std::size_t i = 0; i < without_waiter; ++i) call_finished();
  in_dispatch = outer;
  if (!outer) flush_all();
}

namespace {

task<void> parent_flush_soon(std::shared_ptr<executor_state> st) {
  try {
    co_await sleep_for(std::chrono::nanoseconds(0));  // the end of this loop pass
  } catch (...) {
  }
  st->flush_scheduled = false;
  st->flush_all();
}

// Delivers every published reply of w, then resumes the submitters in reply order and
// publishes the requests they wrote meanwhile. Returns the number of replies.
std::size_t deliver_replies(executor_state& st, executor_worker& w, std::vector<std::coroutine_handle<>>& wake) {
  wake.clear();
  const std::size_t n = w.replies.drain([&](std::span<const std::byte> frame) {
    const std::uint64_t id = executor_frame_id(frame);
    const std::uint64_t slot = id - 1;
    if (id == executor_exit_id || slot >= w.slots.size() || w.slots[slot] == nullptr)
      throw std::runtime_error("corio::executor: reply with an unknown request id from worker " +
                               std::to_string(w.index));
    executor_pending* p = std::exchange(w.slots[slot], nullptr);
    w.free_slots.push_back(static_cast<std::uint32_t>(slot));
    --w.pending;
    p->deliver(p, frame.subspan(executor_header_bytes));
    p->done = true;
    if (p->waiter) wake.push_back(p->waiter);
  });
  if (n == 0) return 0;
  w.reply_room.notify_all();
  // n - wake.size(): calls without a waiter (not possible through executor_call, kept for safety).
  st.finish_calls(wake, n - wake.size());
  return n;
}

task<void> reader(std::shared_ptr<executor_state> st, executor_worker* w) {
  std::vector<std::coroutine_handle<>> wake;
  adaptive_spin spin(st->options.spin);
  try {
    for (;;) {
      if (deliver_replies(*st, *w, wake) != 0) continue;
      const auto ready = [w] { return w->replies.peek().has_value(); };
      if (!(w->pending != 0 ? spin(ready) : ready()))
        co_await w->reply_ready.async_wait_until([w] { return w->replies.peek().has_value(); });
    }
  } catch (const operation_cancelled&) {
    // Stopped by the watcher (the worker ended), or the loop is being destroyed.
  } catch (...) {
    // A corrupt reply frame: the worker cannot be trusted any more. Killing it makes the
    // watcher fail its pending calls with worker_lost instead of leaving them hanging.
    if (w->watching) w->proc->kill();
  }
  w->reader_running = false;
}

std::string describe_end(const executor_worker& w, const process& p) {
  std::string s = "corio::executor: worker " + std::to_string(w.index) + " (pid " + std::to_string(w.pid) + ") ";
  const int code = p.exitcode().value_or(0);
  if (code < 0) {
    s += "was killed by signal " + std::to_string(-code);
    if (const char* name = ::strsignal(-code)) s += std::string(" (") + name + ")";
  } else {
    s += "exited with status " + std::to_string(code);
  }
  return s;
}

// Forks a replacement for the dead worker w under the same index: fresh rings in the same
// region (the dead process can no longer touch them; its unread requests and unpublished
// replies go with it), a new process, a reader if the old one ended. The event_count
// words are kept: a parent-side waiter may be announced there, and a count the dead
// worker left one too high only costs a spare futex wake (event_count.hpp).
void replace_worker(executor_state& st, executor_worker& w) {
  const executor_ring_views views = executor_views(w.region, st.ring_memory);
  w.requests = spsc_ring::format(views.requests);
  w.replies = spsc_ring::format(views.replies);
  w.slots.clear();
  w.free_slots.clear();
  w.pending = 0;
  w.dirty = false;
  st.start_process(w);
  if (!w.reader_running) st.start_reader(w);
}

// After worker w died: forks its replacement (unless the executor is being destroyed or
// the worker was asked to exit), then ends the calls it held: each is sent again while it
// has retries left and the worker was replaced, else it fails with worker_lost. Without a
// replacement the shard is lost for good.
void settle_dead_worker(executor_state& st, executor_worker& w) {
  std::vector<executor_pending*> held;
  for (auto& p : w.slots)
    if (p != nullptr) held.push_back(std::exchange(p, nullptr));
  w.pending = 0;
  std::string what = describe_end(w, *w.proc);
  bool replaced = !st.destroying && !w.exit_requested;
  if (replaced) {
    try {
      replace_worker(st, w);
    } catch (const std::exception& e) {
      replaced = false;
      what += " and could not be replaced (" + std::string(e.what()) + ")";
    }
  }
  if (!replaced) {
    w.lost = true;
    w.lost_what = what;
  }
  std::vector<std::coroutine_handle<>> failed, again;
  for (executor_pending* p : held) {
    if (replaced && p->attempts < st.options.retries) {
      ++p->attempts;
      p->retry = true;
      again.push_back(p->waiter);
    } else {
      p->error = std::make_exception_ptr(worker_lost(what + " while it held this call"));
      failed.push_back(p->waiter);
    }
    p->done = true;
  }
  w.request_room.notify_all();  // submitters waiting for room: a fresh ring, or `lost`
  // Retried calls stay pending (no call_finished): shutdown() keeps waiting for them.
  const bool outer = st.in_dispatch;
  st.in_dispatch = true;
  for (auto h : again) resume(h);
  st.in_dispatch = outer;
  st.finish_calls(failed, 0);  // also publishes the retried requests
}

// Watches worker w through its pidfd for the executor's life, across replacements.
task<void> watcher(std::shared_ptr<executor_state> st, executor_worker* w) {
  for (;;) {
    bool ended = true;
    try {
      co_await w->proc->async_join();
    } catch (...) {
      ended = false;  // the loop is going away: leave reaping to the destructor
    }
    if (!ended) {
      st->attached = nullptr;
      break;
    }
    // Replies the worker published before it ended are good: deliver them first.
    std::vector<std::coroutine_handle<>> wake;
    try {
      deliver_replies(*st, *w, wake);
    } catch (...) {
    }
    settle_dead_worker(*st, *w);
    if (w->lost) break;
  }
  w->watching = false;
  w->reader_stop.request_stop();
  if (--st->watchers == 0) st->all_exited.set();
}

}  // namespace

void executor_state::attach() {
  loop& lp = loop::this_loop();
  if (attached == &lp) return;
  if (attached != nullptr)
    throw std::logic_error("corio::executor: used from a second loop (an executor belongs to one loop thread)");
  attached = &lp;
  all_exited.reset();
  for (auto& w : workers) {
    if (w->lost || w->watching) continue;
    w->watching = true;
    ++watchers;
    start_detached(watcher(shared_from_this(), w.get()), &noop_exit, nullptr, never_stop);
    start_reader(*w);
  }
}

void executor_state::start_reader(executor_worker& w) {
  // A reader of an earlier loop was stopped (and drained by that loop's destructor).
  w.reader_stop = std::stop_source();
  w.reader_token = w.reader_stop.get_token();
  w.reader_running = true;
  start_detached(reader(shared_from_this(), &w), &noop_exit, nullptr, w.reader_token);
}

void executor_state::start_process(executor_worker& w) {
  w.proc.emplace(process_options{.parent_death_signal = SIGKILL}, &executor_worker_main, &w.region, ring_memory,
                 options, w.cpu);
  forker->run([&] { w.proc->start(); });
  w.pid = w.proc->pid();
}

void executor_state::schedule_flush() {
  if (in_dispatch || flush_scheduled) return;
  flush_scheduled = true;
  start_detached(parent_flush_soon(shared_from_this()), &noop_exit, nullptr, never_stop);
}

std::size_t executor_size(const executor_state& st) noexcept { return st.workers.size(); }
std::size_t executor_max_message(const executor_state& st) noexcept { return st.options.max_message_bytes; }

void executor_check_size(const executor_state& st, std::size_t frame_bytes) {
  if (frame_bytes > st.options.max_message_bytes)
    throw std::length_error("corio::executor: request of " + std::to_string(frame_bytes) +
                            " bytes exceeds max_message_bytes (" + std::to_string(st.options.max_message_bytes) + ")");
}

namespace {
void check_open(executor_state& st, executor_worker& w) {
  st.attach();
  if (st.closed) throw std::logic_error("corio::executor: submit after shutdown()");
  if (w.lost) throw worker_lost(w.lost_what);
}
}  // namespace

bool executor_try_start(executor_state& st, std::size_t worker, std::vector<std::byte>& frame, executor_pending& p) {
  executor_worker& w = *st.workers[worker];
  check_open(st, w);
  if (w.room_waiters != 0 || !w.write(frame, p)) return false;
  ++st.pending;
  st.schedule_flush();
  return true;
}

namespace {
// Waits for room in w's request ring, then writes and registers p there. p is already
// counted in st.pending; when the shard is lost meanwhile the call ends (worker_lost).
task<void> write_when_room(executor_state& st, executor_worker& w, std::vector<std::byte>& frame,
                           executor_pending& p) {
  const auto keep = st.shared_from_this();
  ++w.room_waiters;
  struct leave {
    executor_state& st;
    executor_worker& w;
    bool registered = false;
    ~leave() {
      --w.room_waiters;
      if (!registered) st.call_finished();
    }
  } guard{st, w};
  w.dirty = true;
  w.flush();  // the worker must see what is queued to make room (try_write published it)
  bool registered = false;
  co_await w.request_room.async_wait_until([&] { return w.lost || (registered = w.write(frame, p)); });
  guard.registered = registered;
  if (!registered) throw worker_lost(w.lost_what);
  st.schedule_flush();
}
}  // namespace

task<void> executor_start_when_room(executor_state& st, std::size_t worker, std::vector<std::byte>& frame,
                                    executor_pending& p) {
  ++st.pending;  // shutdown() waits for calls waiting for room too
  co_await write_when_room(st, *st.workers[worker], frame, p);
}

task<void> executor_restart(executor_state& st, std::size_t worker, std::vector<std::byte>& frame,
                            executor_pending& p) {
  executor_worker& w = *st.workers[worker];
  p.retry = false;
  p.done = false;
  if (!w.lost && w.room_waiters == 0 && w.write(frame, p)) {
    st.schedule_flush();
    co_return;
  }
  co_await write_when_room(st, w, frame, p);
}

}  // namespace detail

// ---- executor ----------------------------------------------------------------------------------

executor::executor(executor_options options) : state_(std::make_shared<detail::executor_state>()) {
  const std::vector<int> cpus = detail::allowed_cpus();
  if (options.workers == 0)
    options.workers = cpus.empty() ? std::max(1u, std::thread::hardware_concurrency()) : static_cast<unsigned>(cpus.size());
  const std::size_t ring_memory = spsc_ring::bytes_for(std::max(options.ring_bytes, spsc_ring::min_capacity));
  const std::size_t ring_capacity = ring_memory - spsc_ring::header_bytes;
  const std::size_t ring_max = ring_capacity / 2 - 4;
  if (options.max_message_bytes == 0) options.max_message_bytes = ring_max;
  if (options.max_message_bytes > ring_max)
    throw std::invalid_argument("corio::executor: max_message_bytes (" + std::to_string(options.max_message_bytes) +
                                ") exceeds what a ring of " + std::to_string(ring_capacity) + " bytes carries (" +
                                std::to_string(ring_max) + ")");
  if (options.max_message_bytes < detail::executor_header_bytes + 16)
    throw std::invalid_argument("corio::executor: max_message_bytes too small");
  auto& st = *state_;
  st.options = options;
  st.ring_memory = ring_memory;
  const std::size_t region_bytes = sizeof(detail::executor_shared) + 2 * ring_memory;
  for (unsigned i = 0; i < options.workers; ++i) {
    auto w = std::make_unique<detail::executor_worker>(
        i, shm_region::create(region_bytes, "corio-executor"), ring_memory);
    w->cpu = options.pin && !cpus.empty() ? cpus[i % cpus.size()] : -1;
    st.workers.push_back(std::move(w));
  }
  // Forked after every region exists, by the forker thread (PR_SET_PDEATHSIG follows the
  // forking thread: this one may be short-lived). A failure kills the ones started.
  try {
    for (auto& w : st.workers) st.start_process(*w);
  } catch (...) {
    for (auto& w : st.workers)
      if (w->pid != 0) {
        w->proc->kill();
        w->proc->join();
      }
    throw;
  }
}

executor::~executor() {
  if (!state_) return;
  auto& st = *state_;
  st.closed = true;
  st.destroying = true;
  bool any_running = false;
  for (auto& w : st.workers)
    if (w->pid != 0 && !w->lost) {
      w->proc->kill();
      any_running = true;
    }
  if (!any_running) return;
  // Watchers still registered in a loop reap their worker and fail its calls there.
  for (auto& w : st.workers)
    if (!w->watching && !w->lost && w->pid != 0) {
      try {
        w->proc->join();
      } catch (...) {
      }
      w->lost = true;
      w->lost_what = "corio::executor: destroyed";
    }
}

task<void> executor::shutdown() {
  const auto st = state_;
  st->attach();
  if (st->closed) throw std::logic_error("corio::executor: shutdown() called twice");
  st->closed = true;
  if (st->pending != 0) {
    st->idle.reset();
    co_await st->idle.wait();
  }
  for (auto& w : st->workers) {
    if (w->lost) continue;
    w->exit_requested = true;
    const std::uint64_t id = detail::executor_exit_id;
    std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(&id), sizeof id);
    if (!w->requests.try_write(bytes)) {
      w->dirty = true;
      w->flush();
      co_await w->request_room.async_wait_until([&] { return w->lost || w->requests.try_write(bytes); });
    }
    w->dirty = true;
    w->flush();
  }
  if (st->watchers != 0) co_await st->all_exited.wait();
}

pid_t executor::worker_pid(std::size_t index) const {
  check_index(index);
  return state_->workers[index]->pid;
}

void executor::check_index(std::size_t index) const {
  if (index >= size())
    throw std::out_of_range("corio::executor: worker index " + std::to_string(index) + " out of range (size " +
                            std::to_string(size()) + ")");
}

}  // namespace corio