#pragma once
// corio::shared_value<T> / shared_array<T> — values in shared memory, with a lock when
// asked for (Python's multiprocessing.Value and Array).
//
//     corio::shared_value<int> counter(0);            // Value('i', 0), lock=True
//     // in each of 4 forked children:
//     for (int i = 0; i < 10'000; ++i)
//       counter.modify([](int& v) { ++v; });          // read-modify-write under the lock
//     // parent, after joining: counter.get() == 40'000
//
//     corio::shared_array<double> samples(1024);      // Array('d', 1024), zero-filled
//     samples.set(3, 2.5);
//     { std::lock_guard g(samples.get_lock()); samples.span()[0] += samples.span()[3]; }
//
// T must be trivially copyable (memory shared by processes cannot run constructors or
// destructors there; a static_assert says so). With a lock (the default, like Python's
// lock=True) get/set/modify take it, and get_lock() returns it — a
// process_recursive_mutex, like Python's RLock, so get() works inside a get_lock() scope,
// and a holder that dies hands it on (owner_died, see process_mutex.hpp). Without a lock
// (with_lock::no) get/set are single relaxed atomic accesses when T fits a lock-free atomic,
// else plain copies that another process may tear; modify is then refused
// (std::logic_error), as is get_lock().
//
// Shared layout: the lock's state (32 bytes), a header word (the element count, checked
// against the region size when a region is adopted from another process), then the
// element(s), aligned for T. The handle refers to its region (reference-counted), so
// copies and fork()ed children share it; region() sends it to another process.
//
// Thread-safety: any thread of any process mapping the region.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "process_recursive_mutex.hpp"
#include "shm_region.hpp"

namespace corio {

enum class with_lock : bool { no = false, yes = true };

namespace detail {

struct shared_values_header {
  process_recursive_mutex_state lock;
  std::uint64_t count;
  std::uint64_t has_lock;
};

// The elements start here, aligned for T (at least 8).
template <class T>
constexpr std::size_t shared_values_offset = (sizeof(shared_values_header) + alignof(T) - 1) / alignof(T) * alignof(T);

// Values in one region: the part shared_value and shared_array have in common.
template <class T>
class shared_values {
  static_assert(std::is_trivially_copyable_v<T>,
                "shared_value / shared_array hold trivially copyable types only: shared memory runs no "
                "constructors or destructors");
  static_assert(alignof(T) <= 64, "over-aligned types are not supported in shared memory here");

 public:
  shared_values(std::size_t count, with_lock locked, const char* name)
      : region_(std::make_shared<shm_region>(
            shm_region::create(shared_values_offset<T> + std::max<std::size_t>(count, 1) * sizeof(T), name))) {
    header().count = count;
    header().has_lock = locked == with_lock::yes ? 1 : 0;
    attach_lock();
  }

  shared_values(shm_region received, const char* what) : region_(std::make_shared<shm_region>(std::move(received))) {
    // The count comes from another process: checked against what is mapped (trust model).
    const std::size_t size = region_->size();
    if (size < shared_values_offset<T> ||
        header().count > (size - shared_values_offset<T>) / sizeof(T))
      throw std::invalid_argument(std::string(what) + ": the received region (" + std::to_string(size) +
                                  " bytes) is too small for its header or its element count");
    attach_lock();
  }

  [[nodiscard]] std::size_t count() const noexcept { return header().count; }
  [[nodiscard]] bool has_lock() const noexcept { return lock_ != nullptr; }

  [[nodiscard]] process_recursive_mutex& lock(const char* what) const {
    if (!lock_) throw std::logic_error(std::string(what) + ": made without a lock (with_lock::no)");
    return *lock_;
  }

  [[nodiscard]] T* data() const noexcept { return reinterpret_cast<T*>(region_->data() + shared_values_offset<T>); }
  [[nodiscard]] const shm_region& region() const noexcept { return *region_; }

  [[nodiscard]] T load(std::size_t i) const {
    if (lock_) {
      std::lock_guard g(*lock_);
      return data()[i];
    }
    if constexpr (atomic_capable) {
      return std::atomic_ref<T>(data()[i]).load(std::memory_order_relaxed);
    } else {
      T v;
      std::memcpy(&v, &data()[i], sizeof(T));
      return v;
    }
  }

  void store(std::size_t i, const T& v) const {
    if (lock_) {
      std::lock_guard g(*lock_);
      data()[i] = v;
    } else if constexpr (atomic_capable) {
      std::atomic_ref<T>(data()[i]).store(v, std::memory_order_relaxed);
    } else {
      std::memcpy(&data()[i], &v, sizeof(T));
    }
  }

 private:
  static constexpr bool atomic_capable =
      std::atomic_ref<T>::is_always_lock_free && std::atomic_ref<T>::required_alignment <= alignof(T);

  shared_values_header& header() const noexcept { return *reinterpret_cast<shared_values_header*>(region_->data()); }

  void attach_lock() {
    if (header().has_lock != 0) lock_ = std::make_shared<process_recursive_mutex>(header().lock);
  }

  std::shared_ptr<shm_region> region_;
  std::shared_ptr<process_recursive_mutex> lock_;  // a handle; null without a lock
};

}  // namespace detail

template <class T>
class shared_value {
 public:
  explicit shared_value(T initial = T{}, with_lock locked = with_lock::yes)
      : values_(1, locked, "shared_value") {
    values_.data()[0] = initial;
  }
  explicit shared_value(shm_region received) : values_(std::move(received), "shared_value") {
    if (values_.count() != 1) throw std::invalid_argument("shared_value: the received region holds an array");
  }

  [[nodiscard]] T get() const { return values_.load(0); }
  void set(const T& v) const { values_.store(0, v); }
  // Calls f(T&) under the lock and returns what f returns: an atomic read-modify-write
  // with respect to every other locked access.
  template <class F>
  decltype(auto) modify(F&& f) const {
    std::lock_guard g(values_.lock("shared_value::modify"));
    return std::forward<F>(f)(*values_.data());
  }

  [[nodiscard]] process_recursive_mutex& get_lock() const { return values_.lock("shared_value::get_lock"); }
  [[nodiscard]] bool has_lock() const noexcept { return values_.has_lock(); }
  // The value itself, unguarded (hold get_lock() while using it, when there is one).
  [[nodiscard]] T& raw() const noexcept { return *values_.data(); }
  [[nodiscard]] const shm_region& region() const noexcept { return values_.region(); }

 private:
  detail::shared_values<T> values_;
};

template <class T>
class shared_array {
 public:
  // n zero-filled elements.
  explicit shared_array(std::size_t n, with_lock locked = with_lock::yes) : values_(n, locked, "shared_array") {}
  shared_array(std::initializer_list<T> init, with_lock locked = with_lock::yes)
      : values_(init.size(), locked, "shared_array") {
    std::copy(init.begin(), init.end(), values_.data());
  }
  explicit shared_array(shm_region received) : values_(std::move(received), "shared_array") {}

  [[nodiscard]] std::size_t size() const noexcept { return values_.count(); }
  // Element i, under the lock when there is one; std::out_of_range past the end.
  [[nodiscard]] T get(std::size_t i) const { return values_.load(checked(i)); }
  void set(std::size_t i, const T& v) const { values_.store(checked(i), v); }
  // A copy of every element, taken under the lock (a consistent snapshot).
  [[nodiscard]] std::vector<T> snapshot() const {
    auto copy = [&] { return std::vector<T>(values_.data(), values_.data() + size()); };
    if (!values_.has_lock()) return copy();
    std::lock_guard g(values_.lock("shared_array::snapshot"));
    return copy();
  }
  // Calls f(std::span<T>) under the lock; returns what f returns.
  template <class F>
  decltype(auto) modify(F&& f) const {
    std::lock_guard g(values_.lock("shared_array::modify"));
    return std::forward<F>(f)(span());
  }

  [[nodiscard]] process_recursive_mutex& get_lock() const { return values_.lock("shared_array::get_lock"); }
  [[nodiscard]] bool has_lock() const noexcept { return values_.has_lock(); }
  // The elements, unguarded (hold get_lock() while using them, when there is one).
  [[nodiscard]] std::span<T> span() const noexcept { return {values_.data(), size()}; }
  [[nodiscard]] const shm_region& region() const noexcept { return values_.region(); }

 private:
  std::size_t checked(std::size_t i) const {
    if (i >= size())
      throw std::out_of_range("shared_array: index " + std::to_string(i) + " past the end (size " +
                              std::to_string(size()) + ")");
    return i;
  }

  detail::shared_values<T> values_;
};

}  // namespace corio
