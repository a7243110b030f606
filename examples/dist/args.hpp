#pragma once
// The command line of the distributed examples: --address HOST:PORT (default
// 127.0.0.1:6379; HOST may be a name such as localhost or redis.internal, resolved off the
// loop thread at every (re)connect; a redis:// URL or unix:/path works too), --password PW (default: the
// REDISCLI_AUTH environment variable, as redis-cli reads it), and the options a program
// adds (--host-name NAME, --timeout SECONDS).
#include <corio/dist/redis_client.hpp>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

namespace dist_example {

struct args {
  std::string address = "127.0.0.1:6379";
  std::string password;
  std::map<std::string, std::string> extra;  // --name value, for the names the program allows

  corio::redis::options redis() const { return corio::redis::options(address).password(password); }
};

// Exits 2 with the usage on a bad command line.
inline args parse_args(int argc, char** argv, const char* usage, std::map<std::string, std::string> allowed) {
  args a;
  if (const char* pw = std::getenv("REDISCLI_AUTH")) a.password = pw;
  a.extra = std::move(allowed);
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::printf("usage: %s %s\n"
                  "  --address HOST:PORT  where Redis is (default 127.0.0.1:6379): a host name (localhost,\n"
                  "                       redis.internal), an IPv4 address or [IPv6]; also\n"
                  "                       redis://[USER@]HOST[:PORT][/DB], unix:/path, or a comma-separated\n"
                  "                       list of cluster seeds\n"
                  "  --password PW        Redis' password (default: $REDISCLI_AUTH, as redis-cli reads it)\n",
                  argv[0], usage);
      std::exit(0);
    }
    const bool known = flag == "--address" || flag == "--password" ||
                       (flag.starts_with("--") && a.extra.contains(std::string(flag.substr(2))));
    if (!known || i + 1 == argc) {
      std::fprintf(stderr, "%s: %s %s\nusage: %s %s\n", argv[0], known ? "missing value after" : "unknown argument",
                   argv[i], argv[0], usage);
      std::exit(2);
    }
    const char* value = argv[++i];
    if (flag == "--address")
      a.address = value;
    else if (flag == "--password")
      a.password = value;
    else
      a.extra[std::string(flag.substr(2))] = value;
  }
  return a;
}

}  // namespace dist_example
