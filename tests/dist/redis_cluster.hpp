#pragma once
// A Redis Cluster of the test's own: `masters` redis-servers (redis_server.hpp: temporary
// directories, free loopback ports, a password as requirepass and masterauth) started with
// --cluster-enabled, joined by `redis-cli --cluster create`, and waited for until every
// node says cluster_state:ok. Stopped, directories removed, by the destructor (each
// server's own), even when the test fails. Admin commands go through redis-cli.
#include <stdio.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "redis_server.hpp"

namespace corio_test {

class redis_cluster {
 public:
  explicit redis_cluster(int masters = 3) {
    for (int i = 0; i < masters; ++i) {
      redis_server::config c;
      // cluster-port: a free port of its own for the cluster bus (by default port + 10000,
      // which a free port above 55535 cannot have).
      c.extra = {"cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 5000",
                 "cluster-port " + std::to_string(free_port()), "masterauth " + c.password};
      nodes_.push_back(std::make_unique<redis_server>(c));
    }
    std::string create = "--cluster create";
    for (const auto& n : nodes_) create += " " + n->address();
    const std::string out = cli(0, create + " --cluster-yes");
    if (out.find("All 16384 slots covered") == std::string::npos)
      throw std::runtime_error("redis-cli --cluster create failed:\n" + out);
    wait_ok();
  }

  int size() const { return static_cast<int>(nodes_.size()); }
  redis_server& node(int i) { return *nodes_.at(static_cast<std::size_t>(i)); }
  const std::string& password() const { return nodes_.at(0)->password(); }
  // "127.0.0.1:P1,127.0.0.1:P2,...": the seed list of a client.
  std::string seeds() const {
    std::string s;
    for (const auto& n : nodes_) s += (s.empty() ? "" : ",") + n->address();
    return s;
  }

  // redis-cli against node i (password given), its output with trailing newlines cut.
  std::string cli(int i, const std::string& args) const {
    const std::string cmd = "redis-cli -p " + std::to_string(nodes_.at(static_cast<std::size_t>(i))->port()) + " -a '" +
                            password() + "' --no-auth-warning " + args + " 2>&1";
    FILE* f = ::popen(cmd.c_str(), "r");
    if (f == nullptr) throw std::runtime_error("popen redis-cli failed");
    std::string out;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
    ::pclose(f);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
  }
  std::string id(int i) const { return cli(i, "cluster myid"); }

  // The node that serves `slot`, by its own word (CLUSTER NODES' "myself" line).
  int owner(int slot) const {
    for (int i = 0; i < size(); ++i) {
      std::istringstream nodes(cli(i, "cluster nodes"));
      for (std::string line; std::getline(nodes, line);) {
        if (line.find("myself") == std::string::npos) continue;
        std::istringstream words(line);
        std::string w;
        for (int skip = 0; skip < 8 && words >> w; ++skip) {
        }
        while (words >> w) {
          if (w.starts_with("[")) continue;  // a migration in progress
          const std::size_t dash = w.find('-');
          const int first = std::stoi(w.substr(0, dash));
          const int last = dash == std::string::npos ? first : std::stoi(w.substr(dash + 1));
          if (slot >= first && slot <= last) return i;
        }
      }
    }
    return -1;
  }

  // Until every node says cluster_state:ok, at most 20 s.
  void wait_ok() const {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (int i = 0; i < size(); ++i) {
      while (cli(i, "cluster info").find("cluster_state:ok") == std::string::npos) {
        if (std::chrono::steady_clock::now() > give_up)
          throw std::runtime_error("the cluster did not reach cluster_state:ok within 20 s: " + cli(i, "cluster info"));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }

 private:
  std::vector<std::unique_ptr<redis_server>> nodes_;
};

}  // namespace corio_test

namespace corio_test {
inline bool have_redis_cli() {
  static const bool have = std::system("command -v redis-cli >/dev/null 2>&1") == 0;
  return have;
}
}  // namespace corio_test

// A test case that needs redis-server and redis-cli (skipped with the reason without them).
#define REDIS_CLUSTER_TEST_CASE(name)                                                      \
  CORIO_TEST_IF(name, corio_test::have_redis_server() && corio_test::have_redis_cli(), \
                "redis-server or redis-cli is not installed (scripts/deps.sh installs them)")
