#pragma once
// shared_block<State>: where a process primitive's state lives (process_mutex, ...).
//
// Three ways to get one, mirroring how a user shares memory:
// - shared_block(name): a fresh shm_region of its own, sized for State and zero-filled
//   (Python's `Lock()`: nothing to lay out). Copies of the primitive in this process share
//   the region (reference-counted); a fork()ed child inherits the mapping at the same
//   address, so the copy it holds keeps working there.
// - shared_block(state): a view of a State the user placed in memory of their own (a struct
//   in their own shm_region, many primitives in one region). The user keeps it alive.
// - shared_block(region, what): adopts a region received from another process (see
//   shm_region::receive); it must be at least sizeof(State) bytes.
//
// State must be trivially copyable and valid when zero-filled: a fresh region is zeroed,
// and no constructor runs in a process that merely maps the memory.

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "../shm_region.hpp"

namespace corio::detail {

template <class State>
class shared_block {
  static_assert(std::is_trivially_copyable_v<State>, "state in shared memory must be trivially copyable");

 public:
  explicit shared_block(const char* name_for_debug)
      : region_(std::make_shared<shm_region>(shm_region::create(sizeof(State), name_for_debug))),
        state_(reinterpret_cast<State*>(region_->data())) {}

  explicit shared_block(State& state) noexcept : state_(&state) {}

  shared_block(shm_region region, const char* what)
      : region_(std::make_shared<shm_region>(std::move(region))), state_(reinterpret_cast<State*>(region_->data())) {
    if (region_->size() < sizeof(State))
      throw std::invalid_argument(std::string(what) + ": the shared memory region has " +
                                  std::to_string(region_->size()) + " bytes, the state needs " +
                                  std::to_string(sizeof(State)));
  }

  [[nodiscard]] State& state() const noexcept { return *state_; }

  // The region to send to another process (send_fd); std::logic_error for a view, whose
  // memory belongs to the user.
  [[nodiscard]] const shm_region& region(const char* what) const {
    if (!region_)
      throw std::logic_error(std::string(what) + ": a view of user memory has no region of its own to share");
    return *region_;
  }

 private:
  std::shared_ptr<shm_region> region_;
  State* state_;
};

}  // namespace corio::detail
