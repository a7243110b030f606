// handoff: queues, connections, regions, joinable queues and process objects handed over a
// Unix socket to a process that was not fork()ed from their creator (a child forked before
// they existed, an exec'd program started through child_handoff, an orphan nobody here is
// the parent of) and used there. What a peer that lies gets: handoff_peer_test.cpp.
#include <doctest/doctest.h>

#include "handoff_test_types.hpp"
#include "ipc_test_support.hpp"

#include <corio/coro/when_all.hpp>
#include <corio/ipc/handoff.hpp>
#include <corio/ipc/process_event.hpp>
#include <corio/ipc/process_mutex.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using corio::handoff_error;
using corio::unix_stream;
using corio_test::exit_status;
using corio_test::fork_child;

TEST_CASE("receiving leaves the socket's SO_PASSCRED as it was") {
  auto passcred = [](const unix_stream& s) {
    int on = -1;
    socklen_t len = sizeof on;
    REQUIRE(::getsockopt(s.fd(), SOL_SOCKET, SO_PASSCRED, &on, &len) == 0);
    return on;
  };
  auto [a, b] = unix_stream::pair();
  auto region = corio::shm_region::create(4096, "handoff-test");
  corio::send_handle(a, region);
  CHECK(corio::receive_handle<corio::shm_region>(b).size() == 4096);
  CHECK(passcred(b) == 0);
  const int on = 1;
  REQUIRE(::setsockopt(b.fd(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0);
  corio::send_handle(a, region);
  CHECK(corio::receive_handle<corio::shm_region>(b).size() == 4096);
  CHECK(passcred(b) == 1);
}

TEST_CASE("a queue, a connection and a region reach a process forked before they existed, over a socketpair") {
  auto [mine, theirs] = unix_stream::pair();
  const pid_t pid = fork_child([&, &theirs = theirs] {
    // Nothing was inherited: the objects are made after this fork.
    auto q = corio::receive_handle<corio::queue<std::string>>(theirs);
    auto c = corio::receive_handle<corio::connection<std::string>>(theirs);
    auto r = corio::receive_handle<corio::shm_region>(theirs);
    if (r.size() != 4096) return 10;
    for (std::string v = q.get(); v != "end"; v = q.get()) c.send("got " + v);
    std::memcpy(r.data(), "child", 6);
    c.send("done");
    return 0;
  });
  theirs.close();
  corio::queue<std::string> q(8);
  auto [here, there] = corio::make_pipe<std::string>();
  auto region = corio::shm_region::create(4096, "handoff-test");
  corio::send_handle(mine, q);
  corio::send_handle(mine, there);
  corio::send_handle(mine, region);
  there.close();  // the child holds the only other copy now
  for (const char* v : {"a", "bb", "ccc", "end"}) q.put(v);
  std::vector<std::string> replies;
  for (int i = 0; i < 4; ++i) {
    REQUIRE_MESSAGE(here.poll(10s), "the child did not answer within 10 s");
    replies.push_back(here.recv());
  }
  CHECK(replies == std::vector<std::string>{"got a", "got bb", "got ccc", "done"});
  CHECK(std::string(reinterpret_cast<const char*>(region.data())) == "child");
  CHECK(exit_status(pid) == 0);
  CHECK_THROWS_AS((void)here.recv(), corio::pipe_closed);  // the child's end died with it
}

TEST_CASE("an exec'd program started through child_handoff receives the objects by inheritance and uses them") {
  const char* helper = std::getenv("CORIO_TEST_HANDOFF_HELPER");
  REQUIRE_MESSAGE(helper != nullptr, "CORIO_TEST_HANDOFF_HELPER names tests/ipc/handoff_helper (tests/meson.build)");
  corio::queue<std::string> q(8);
  auto [here, there] = corio::make_pipe<std::string>();
  auto region = corio::shm_region::create(4096, "handoff-test");
  corio::child_handoff h;
  h.send(q);  // before the start: the messages wait in the socket
  h.send(there);
  corio::subprocess::child c = h.spawn({helper, "use"});
  h.send(region);  // after the start works too
  there.close();
  for (const char* v : {"x", "yz", "end"}) q.put(v);
  std::vector<std::string> replies;
  for (int i = 0; i < 3; ++i) {
    REQUIRE_MESSAGE(here.poll(10s), "the helper did not answer within 10 s");
    replies.push_back(here.recv());
  }
  CHECK(replies == std::vector<std::string>{"got x", "got yz", "done"});
  CHECK(std::string(reinterpret_cast<const char*>(region.data())) == "helper was here");
  corio::loop lp;
  CHECK(lp.run(c.wait(corio::within(10s))) == 0);
  CHECK_THROWS_AS((void)h.spawn({helper, "use"}), std::logic_error);
}

TEST_CASE("a 4 MiB value goes through handed-over queues to an exec'd program and back, via the value arena") {
  const char* helper = std::getenv("CORIO_TEST_HANDOFF_HELPER");
  REQUIRE(helper != nullptr);
  corio::queue<std::string> requests(2), replies(2);
  const std::size_t bytes = std::size_t{4} << 20;
  REQUIRE(requests.max_value_bytes() >= bytes + 1);  // RLIMIT_FSIZE leaves the arena room
  corio::child_handoff h;
  h.send(requests);
  h.send(replies);
  corio::subprocess::child c = h.spawn({helper, "large"});
  requests.put(corio_test::large_value(bytes, 0));
  const std::string back = replies.get(true, 20s);
  CHECK(back.size() == bytes + 1);
  CHECK(back == corio_test::large_value(bytes + 1, 1));
  corio::loop lp;
  CHECK(lp.run(c.wait(corio::within(10s))) == 0);
}

namespace {

// A process's parent pid and state letter from /proc/<pid>/stat; {0, '?'} once it is gone.
std::pair<pid_t, char> parent_and_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');
  if (paren == std::string::npos) return {0, '?'};
  std::istringstream rest(text.substr(paren + 2));
  char state = '?';
  pid_t parent = 0;
  rest >> state >> parent;
  return {parent, state};
}

}  // namespace

TEST_CASE("a consumer in an unrelated program killed inside a get costs one value, and the queue goes on") {
  const char* helper = std::getenv("CORIO_TEST_HANDOFF_HELPER");
  REQUIRE(helper != nullptr);
  // A ring of 2 slots: the third put needs the slot the dead consumer held.
  corio::queue<corio_test::stalling_value> q(2);
  auto [here, there] = corio::make_pipe<std::string>();
  corio::child_handoff h;
  h.send(q);
  h.send(there);
  // sh starts the helper in the background and exits at once: the helper is orphaned, so
  // it is nobody's child here (its parent becomes init or the nearest subreaper).
  corio::subprocess::child sh = h.spawn({"sh", "-c", "\"$0\" stall-in-get >/dev/null & echo $!", helper},
                                        corio::subprocess::options{}.out(corio::subprocess::stdio::pipe()));
  there.close();
  corio::loop lp;
  const auto started = lp.run(sh.communicate({}, corio::within(10s)));
  REQUIRE(started.returncode == 0);
  const pid_t pid = std::stoi(started.out);
  q.put({-1});  // the helper stops while decoding it
  REQUIRE_MESSAGE(here.poll(10s), "the helper did not report its stall within 10 s");
  CHECK(here.recv() == "stalled in get, pid " + std::to_string(pid));
  CHECK(parent_and_state(pid).first != ::getpid());  // not our child
  REQUIRE(::kill(pid, SIGKILL) == 0);
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (parent_and_state(pid).second != '?' && parent_and_state(pid).second != 'Z' &&
         std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(1ms);
  const char state = parent_and_state(pid).second;
  CHECK((state == '?' || state == 'Z'));  // reaped by its new parent, or a zombie there
  q.put({2});
  CHECK(q.get(true, 5s).v == 2);
  q.put({3}, true, 5s);  // blocked by the dead claim until it is recovered
  CHECK(q.get(true, 5s).v == 3);
  CHECK(q.lost() == 1);
}

TEST_CASE("an exec'd program that expects a queue<int> refuses the queue<std::string> it inherits") {
  const char* helper = std::getenv("CORIO_TEST_HANDOFF_HELPER");
  REQUIRE(helper != nullptr);
  corio::queue<std::string> q;
  corio::child_handoff h;
  h.send(q);
  corio::subprocess::child c =
      h.spawn({helper, "expect-int-queue"}, corio::subprocess::options{}.out(corio::subprocess::stdio::pipe()));
  corio::loop lp;
  const auto r = lp.run(c.communicate({}, corio::within(10s)));
  CHECK(r.returncode == 0);
  CHECK(r.out ==
        "corio::receive_handle<corio::queue<int>>: type mismatch: the sender's queue carries "
        "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >, this receiver expects int\n");
}

TEST_CASE("a joinable_queue handed to a second process counts its task_done, a 1 MiB value among them: join returns") {
  auto [mine, theirs] = unix_stream::pair();
  const pid_t pid = fork_child([&, &theirs = theirs] {
    auto q = corio::receive_handle<corio::joinable_queue<std::string>>(theirs);
    std::size_t sum = 0;
    for (int i = 0; i < 3; ++i) {
      sum += q.get().size();
      q.task_done();
    }
    return sum == 6 + (std::size_t{1} << 20) ? 0 : 10;
  });
  theirs.close();
  corio::joinable_queue<std::string> q;
  corio::send_handle(mine, q);
  for (std::size_t n : {std::size_t{1}, std::size_t{1} << 20, std::size_t{5}}) q.put(std::string(n, 'j'));
  CHECK(q.join(10s));
  CHECK(q.unfinished_tasks() == 0);
  CHECK(exit_status(pid) == 0);
}

TEST_CASE("a process_event and a process_mutex handed over are the same objects in the receiver") {
  auto [mine, theirs] = unix_stream::pair();
  const pid_t pid = fork_child([&, &theirs = theirs] {
    auto m = corio::receive_handle<corio::process_mutex>(theirs);
    auto e = corio::receive_handle<corio::process_event>(theirs);
    auto r = m.lock();  // waits until the parent unlocks
    m.unlock();
    e.set();
    return r ? 0 : 10;
  });
  theirs.close();
  corio::process_mutex m;
  corio::process_event e;
  auto held = m.lock();
  REQUIRE(held);
  corio::send_handle(mine, m);
  corio::send_handle(mine, e);
  CHECK_FALSE(e.wait_for(50ms));  // the child is stuck on our lock
  m.unlock();
  CHECK(e.wait_for(10s));
  CHECK(exit_status(pid) == 0);
}

TEST_CASE("async_receive_handle waits inside a loop while other coroutines run") {
  auto [mine, theirs] = unix_stream::pair();
  corio::queue<int> q;
  corio::loop lp;
  int ticks = 0;
  auto receiver = [&]() -> corio::task<int> {
    auto got = co_await corio::async_receive_handle<corio::queue<int>>(theirs);
    co_return got.get();
  };
  auto sender = [&]() -> corio::task<void> {
    for (; ticks < 3; ++ticks) co_await corio::sleep_for(5ms);
    corio::send_handle(mine, q);
    q.put(42);
  };
  auto both = [&]() -> corio::task<int> {
    auto [value, done] = co_await corio::when_all(receiver(), sender());
    (void)done;
    co_return value;
  };
  CHECK(lp.run(both()) == 42);
  CHECK(ticks == 3);  // the receiver did not block the loop's thread
}

TEST_CASE("an element type whose mangled name is longer than the header's field still goes through") {
  using long_name = std::tuple<std::vector<std::pair<std::string, std::optional<long>>>, std::map<int, std::string>,
                               std::set<unsigned long long>, std::array<short, 3>, std::vector<std::vector<double>>>;
  using other = std::tuple<std::vector<std::pair<std::string, std::optional<long>>>, std::map<int, std::string>,
                           std::set<unsigned long long>, std::array<short, 3>, std::vector<std::vector<float>>>;
  REQUIRE(std::strlen(typeid(long_name).name()) > 127);
  REQUIRE(std::strncmp(typeid(long_name).name(), typeid(other).name(), 127) == 0);  // only the tail differs
  auto [a, b] = unix_stream::pair();
  corio::queue<long_name> q(2, {.slot_bytes = 1024});
  corio::send_handle(a, q);
  auto got = corio::receive_handle<corio::queue<long_name>>(b);
  q.put(long_name{{{"x", 5L}}, {{1, "one"}}, {7}, {1, 2, 3}, {{0.5}}});
  CHECK(std::get<1>(got.get()).at(1) == "one");
  corio::send_handle(a, q);  // the fingerprint covers the whole name
  CHECK_THROWS_AS((void)corio::receive_handle<corio::queue<other>>(b), handoff_error);
}
