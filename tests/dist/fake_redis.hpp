#pragma once
// A fake Redis on a thread, for replies a real server would not give (-LOADING forever, a
// lying MOVED): answer(argv) makes each reply, in RESP; commands() counts those answered.
// CLUSTER SLOTS (the client's cluster probe at connect) is answered as a single Redis
// answers it, unless answer() is asked to answer it too (answer_cluster_slots). Plain
// blocking sockets on loopback; clients served one after another.
#include <doctest/doctest.h>

#include <corio/dist/command_parser.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace corio_test {

class fake_redis {
 public:
  using answer_fn = std::function<std::string(const std::vector<std::string_view>& argv, int n)>;

  explicit fake_redis(answer_fn answer, bool answer_cluster_slots = false)
      : answer_(std::move(answer)), answer_cluster_slots_(answer_cluster_slots) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 4) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~fake_redis() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  fake_redis(const fake_redis&) = delete;
  fake_redis& operator=(const fake_redis&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int commands() const { return commands_.load(); }

 private:
  void serve() {
    for (;;) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      serve_one(c);
      ::close(c);
    }
  }
  void serve_one(int c) {
    std::string in;
    corio::resp::command_parser parser;
    char buf[4096];
    for (ssize_t n; (n = ::recv(c, buf, sizeof buf, 0)) > 0;) {
      in.append(buf, static_cast<std::size_t>(n));
      std::vector<std::string_view> argv;
      for (;;) {
        const auto r = parser.parse(in, argv);
        if (r.status != corio::resp::parse_status::complete) break;
        std::string reply;
        if (!answer_cluster_slots_ && argv.size() == 2 && argv[0] == "CLUSTER" && argv[1] == "SLOTS")
          reply = "-ERR This instance has cluster support disabled\r\n";
        else
          reply = answer_(argv, commands_++);
        (void)!::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
        in.erase(0, r.consumed);
        if (in.empty()) break;
      }
    }
  }

  answer_fn answer_;
  bool answer_cluster_slots_;
  int fd_;
  int port_ = 0;
  std::atomic<int> commands_{0};
  std::thread thread_;
};

}  // namespace corio_test
