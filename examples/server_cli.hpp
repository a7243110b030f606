#pragma once
// The command-line conventions the example servers share: `--help` / `-h` prints the usage
// to stdout and exits 0; an option the server does not know is refused with the usage on
// stderr and exit status 2, instead of being read as an address or a number (which gave
// `bad address "127.0.0.1:--help"`). And the runtime they run: corio::server_runtime_options()
// (runtime/server_defaults.hpp explains its shard count and idle polling), which the SHARDS
// argument and --idle-poll override.

#include <corio/runtime/runtime.hpp>
#include <corio/runtime/server_defaults.hpp>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>

namespace examples {

// Call first in main. `options_with_value` are the options that take the next argument
// (their value may start with '-'); every other argument that starts with '-' and is not a
// bare number is an unknown option.
inline void handle_help(int argc, char** argv, std::string_view usage,
                        std::initializer_list<std::string_view> options_with_value = {}) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fwrite(usage.data(), 1, usage.size(), stdout);
      std::exit(0);
    }
    bool takes_value = false;
    for (std::string_view o : options_with_value) takes_value = takes_value || arg == o;
    if (takes_value) {
      ++i;
      continue;
    }
    const bool negative_number = arg.size() > 1 && arg[0] == '-' && arg[1] >= '0' && arg[1] <= '9';
    if (arg.size() > 1 && arg[0] == '-' && !negative_number) {
      std::fprintf(stderr, "%s: unknown option %s\n", argv[0], argv[i]);
      std::fwrite(usage.data(), 1, usage.size(), stderr);
      std::exit(2);
    }
  }
}

// The usage lines every example server shares: what SHARDS and --idle-poll mean by default.
constexpr std::string_view server_usage_shards =
    "  SHARDS default: one per CPU; 0: one per CPU\n";
constexpr std::string_view server_usage_shards_hopping =
    "  SHARDS default: 1 on a machine of 1 or 2 CPUs (requests hop to the shard owning their\n"
    "    keys, and a hop waits while that shard's CPU runs the clients), else one per CPU;\n"
    "    0: one per CPU\n";
constexpr std::string_view server_usage_idle_poll =
    "  --idle-poll US  each shard polls this long for new work before it sleeps, yielding\n"
    "    to waiting threads (default 50: a client's send then need not wake a sleeping\n"
    "    shard; 0: sleep at once)\n";

// Reads a number in 0..max; else std::invalid_argument `bad WHAT "ARG" (expected 0..MAX NOTE)`.
inline unsigned long parse_number(std::string_view arg, unsigned long max, std::string_view what,
                                  std::string_view note) {
  unsigned long n = 0;
  const auto [end, error] = std::from_chars(arg.data(), arg.data() + arg.size(), n);
  if (error != std::errc() || end != arg.data() + arg.size() || n > max)
    throw std::invalid_argument("bad " + std::string(what) + " \"" + std::string(arg) + "\" (expected 0.." +
                                std::to_string(max) + std::string(note) + ")");
  return n;
}

// The SHARDS argument; 0 means one per CPU (corio::runtime_options' meaning).
inline unsigned parse_shards(std::string_view arg) {
  return static_cast<unsigned>(parse_number(arg, 4096, "shard count", "; 0: one per CPU"));
}

// If argv[i] is --idle-poll, reads its value into `options` and steps `i` past it.
inline bool take_idle_poll(int& i, int argc, char** argv, corio::runtime_options& options) {
  if (std::string_view(argv[i]) != "--idle-poll") return false;
  if (i + 1 == argc) throw std::invalid_argument("--idle-poll needs a value (microseconds)");
  options.loop.idle_poll = std::chrono::microseconds(parse_number(argv[++i], 1'000'000, "--idle-poll", " microseconds"));
  return true;
}

}  // namespace examples
