// corio::executor, the worker process side: drains the request ring, runs each call
// (plain calls inline, coroutine calls as tasks on the worker's loop), writes the replies.
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "../runtime/detail/cpu_affinity.hpp"
#include "../runtime/event.hpp"
#include "../runtime/loop.hpp"
#include "../runtime/timer.hpp"
#include "detail/executor_shared.hpp"
#include "spsc_ring.hpp"

namespace corio::detail {
namespace {

// ---- the worker process ----------------------------------------------------------------------

struct worker_side {
  worker_side(executor_ring_views v, const executor_options& o)
      : requests(spsc_ring::attach(v.requests)),
        replies(spsc_ring::attach(v.replies)),
        request_ready(v.shared->request_ready),
        request_room(v.shared->request_room),
        reply_ready(v.shared->reply_ready),
        reply_room(v.shared->reply_room),
        max_message(o.max_message_bytes),
        spin(o.spin) {}

  spsc_ring requests;  // consumer side
  spsc_ring replies;   // producer side
  event_count request_ready, request_room, reply_ready, reply_room;
  std::size_t max_message;
  adaptive_spin spin;
  std::size_t in_flight = 0;
  bool exiting = false;
  bool dispatching = false;  // inside the request drain: its end publishes the replies
  bool flush_scheduled = false;
  event drained;

  void flush() noexcept {
    replies.publish();
    reply_ready.notify_all();
  }
};

task<void> worker_flush_soon(worker_side& w) {
  try {
    co_await sleep_for(std::chrono::nanoseconds(0));  // the end of this loop pass
  } catch (...) {
  }
  w.flush_scheduled = false;
  w.flush();
}

void worker_reply_written(worker_side& w) {
  if (w.dispatching || w.flush_scheduled) return;
  w.flush_scheduled = true;
  loop::this_loop().spawn(worker_flush_soon(w));
}

// A reply too large for the ring becomes an error reply (the call's result is dropped).
void bound_reply(worker_side& w, std::vector<std::byte>& reply) {
  if (reply.size() > w.max_message) {
    const std::size_t value_bytes = reply.size() - executor_header_bytes;
    reply.resize(executor_header_bytes);
    try {
      throw std::length_error("corio::executor: reply of " + std::to_string(value_bytes) +
                              " bytes exceeds max_message_bytes (" + std::to_string(w.max_message) + ")");
    } catch (...) {
      append_error_reply(reply, executor_header_bytes);
    }
  }
}

// Writes a reply, waiting for room in the reply ring when it is full.
task<void> worker_send_reply(worker_side& w, std::vector<std::byte> reply) {
  ++w.in_flight;
  w.flush();  // the parent must see what is there to make room
  co_await w.reply_room.async_wait_until([&w, &reply] { return w.replies.try_write(reply); });
  worker_reply_written(w);
  if (--w.in_flight == 0 && w.exiting) w.drained.set();
}

task<void> worker_handle(worker_side& w, std::uint64_t id, std::span<const std::byte> request) {
  ++w.in_flight;
  std::vector<std::byte> reply(executor_header_bytes);
  std::memcpy(reply.data(), &id, sizeof id);
  // The request bytes are decoded before the call's first suspension (remote_call.hpp),
  // while the drain that handed them to us still holds them.
  co_await run_call_async(request, reply);
  bound_reply(w, reply);
  if (!w.replies.try_write(reply)) {
    w.flush();  // the parent must see what is there to make room
    co_await w.reply_room.async_wait_until([&w, &reply] { return w.replies.try_write(reply); });
  }
  worker_reply_written(w);
  if (--w.in_flight == 0 && w.exiting) w.drained.set();
}

task<void> worker_loop(worker_side& w) {
  loop& lp = loop::this_loop();
  std::vector<std::byte> scratch;
  scratch.reserve(4096);
  for (;;) {
    w.dispatching = true;
    std::size_t n = 0;
    try {
      n = w.requests.drain([&](std::span<const std::byte> frame) {
        const std::uint64_t id = executor_frame_id(frame);
        if (id == executor_exit_id) {
          w.exiting = true;
          return;
        }
        const auto request = frame.subspan(executor_header_bytes);
        if (request.empty() || request[0] != std::byte{static_cast<std::uint8_t>(call_kind::plain)}) {
          lp.spawn(worker_handle(w, id, request));  // a coroutine (or a malformed request)
          return;
        }
        // A plain call runs to completion right here: no task, no frame, and the reply
        // buffer is reused from call to call. run_call's loop is for coroutine calls only,
        // which never get here, so running it inside this loop is fine.
        scratch.resize(executor_header_bytes);
        std::memcpy(scratch.data(), &id, sizeof id);
        run_call(request, scratch);
        bound_reply(w, scratch);
        if (!w.replies.try_write(scratch)) lp.spawn(worker_send_reply(w, scratch));
      });
    } catch (...) {
      w.dispatching = false;
      throw;
    }
    w.dispatching = false;
    if (n != 0) {
      w.request_room.notify_all();
      w.flush();
    }
    if (w.exiting) break;
    if (n == 0) {
      if (!w.spin([&w] { return w.requests.peek().has_value(); }))
        co_await w.request_ready.async_wait_until([&w] { return w.requests.peek().has_value(); });
    }
  }
  if (w.in_flight != 0) co_await w.drained.wait();
  w.flush();
}

}  // namespace

void executor_worker_main(const shm_region* region, std::size_t ring_memory, executor_options options, int cpu) {
  // Best effort: a CPU taken away since the constructor read the mask only costs locality.
  // The worker process has this one thread, so pinning it pins the process.
  if (cpu >= 0) (void)pin_this_thread(cpu);
  worker_side w(executor_views(*region, ring_memory), options);
  loop lp;
  lp.run(worker_loop(w));
}


}  // namespace corio::detail
