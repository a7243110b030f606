#pragma once
// The command-line conventions the example servers share: `--help` / `-h` prints the usage
// to stdout and exits 0; an option the server does not know is refused with the usage on
// stderr and exit status 2, instead of being read as an address or a number (which gave
// `bad address "127.0.0.1:--help"`).

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
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

}  // namespace examples
