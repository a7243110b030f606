// libFuzzer target: the RESP2 command parser (dist/command_parser.hpp, which kv_server
// uses), fed as a pipelining client would: each complete command is consumed and parsing goes
// on with the rest, as kv_server does. Checks the parser's contract: a complete command's
// arguments are views inside the buffer and it consumed at least one byte but no more
// than the buffer; an incomplete one asks for more than the buffer holds; an error leaves
// argv untouched and has a message.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "../../dist/command_parser.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view buf(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> argv;
  while (!buf.empty()) {
    argv.clear();
    argv.emplace_back("untouched");  // parse_command appends; an error must leave this alone
    const corio::resp::parse_result r = corio::resp::parse_command(buf, argv);
    switch (r.status) {
      case corio::resp::parse_status::complete:
        corio_fuzz::check(r.consumed > 0 && r.consumed <= buf.size(), "a complete command consumed past the buffer");
        for (std::size_t i = 1; i < argv.size(); ++i)
          corio_fuzz::check(argv[i].data() >= buf.data() && argv[i].data() + argv[i].size() <= buf.data() + r.consumed,
                            "an argument is not inside the command's bytes");
        buf.remove_prefix(r.consumed);
        break;
      case corio::resp::parse_status::incomplete:
        corio_fuzz::check(argv.size() == 1, "an incomplete command left arguments behind");
        corio_fuzz::check(r.need > buf.size(), "an incomplete command asks for no more bytes than it has");
        return 0;
      case corio::resp::parse_status::error:
        corio_fuzz::check(argv.size() == 1, "an error left arguments behind");
        corio_fuzz::check(!r.error_text().empty(), "an error has no message");
        return 0;
    }
  }
  return 0;
}
