// frame_allocator: coroutine frames are recycled per thread and survive crossing threads.
#include <doctest/doctest.h>

#include <corio/coro/detail/frame_allocator.hpp>
#include <corio/coro/sync_wait.hpp>
#include <corio/coro/task.hpp>

#include <thread>
#include <vector>

using corio::detail::frame_allocator;

namespace {
#ifdef CORIO_NO_FRAME_POOL
constexpr bool pool_enabled = false;  // sanitizer builds send every frame to the heap
#else
constexpr bool pool_enabled = true;
#endif

corio::task<int> one() { co_return 1; }
}  // namespace

TEST_CASE("a freed frame is reused by the next allocation of its size class" *
          doctest::skip(!pool_enabled)) {
  void* a = frame_allocator::allocate(200);
  frame_allocator::deallocate(a, 200);
  void* b = frame_allocator::allocate(250);  // same 64-byte class (193..256)
  CHECK(b == a);
  frame_allocator::deallocate(b, 250);
}

TEST_CASE("sizes in different classes do not share blocks" * doctest::skip(!pool_enabled)) {
  void* small = frame_allocator::allocate(64);
  frame_allocator::deallocate(small, 64);
  void* big = frame_allocator::allocate(65);
  CHECK(big != small);
  frame_allocator::deallocate(big, 65);
}

TEST_CASE("frames larger than the largest class go to the heap and back") {
  std::vector<void*> blocks;
  for (int i = 0; i < 8; ++i) blocks.push_back(frame_allocator::allocate(64 * 1024));
  for (void* p : blocks) frame_allocator::deallocate(p, 64 * 1024);
  CHECK(blocks.size() == 8);
}

TEST_CASE("a million task frames in sequence reuse a handful of blocks") {
  long long sum = 0;
  for (int i = 0; i < 1'000'000; ++i) sum += corio::sync_wait(one());
  CHECK(sum == 1'000'000);
}

TEST_CASE("frames allocated on one thread may be freed on another") {
  constexpr int n = 10'000;
  std::vector<void*> blocks(n);
  std::thread producer([&] {
    for (auto& p : blocks) p = frame_allocator::allocate(128);
  });
  producer.join();  // its cache is gone now; its blocks are ordinary heap blocks
  std::thread consumer([&] {
    for (void* p : blocks) frame_allocator::deallocate(p, 128);
    // This thread's cache keeps at most its bound and frees the rest at thread exit.
    void* again = frame_allocator::allocate(128);
    CHECK(again != nullptr);
    frame_allocator::deallocate(again, 128);
  });
  consumer.join();
}
