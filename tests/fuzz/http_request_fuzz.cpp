// libFuzzer target: the HTTP/1.1 request parser of examples/http_hello
// (examples/http/request.hpp), fed as a pipelining client would: each complete request
// is consumed and the parser runs again on the rest, as serve_http does.
// Checks the parser's contract: a complete request fits in what was read; an error or an
// incomplete request has length 0; the status is one the server can answer.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "../../examples/http/request.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (;;) {
    const http::request r = http::parse(in);
    switch (r.status) {
      case 0:
        corio_fuzz::check(r.length == 0, "an incomplete request has a length");
        return 0;
      case 200:
      case 404:
      case 405:
        corio_fuzz::check(r.length > 0 && r.length <= in.size(), "a complete request's length is past what was read");
        corio_fuzz::check(r.length <= http::max_header_bytes + http::max_body_bytes, "a request over the limits was accepted");
        in.remove_prefix(r.length);
        break;
      case 400:
      case 413:
      case 431:
        corio_fuzz::check(r.length == 0, "an error answer has a length");
        return 0;
      default:
        corio_fuzz::check(false, "parse returned a status the server cannot answer");
    }
  }
}
