// libFuzzer target for corio::codec: every input must decode or throw decode_error, as
// several nested types; anything else (a crash, a sanitizer report, another exception)
// is a finding. Built and run by scripts/test.sh's fuzz step; see docs/testing.md.
#include <corio/ipc/codec.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

namespace {

struct node {
  std::int8_t value = 0;
  bool flag = false;
  std::vector<node> kids;
  template <class Ar>
  void corio_fields(Ar& ar) {
    ar(value, flag, kids);
  }
};

template <class T>
void try_decode(std::span<const std::byte> in) {
  try {
    (void)corio::decode<T>(in);
  } catch (const corio::decode_error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  try_decode<std::map<std::string, std::vector<std::optional<std::variant<int, std::string, bool>>>>>(in);
  try_decode<std::tuple<node, std::unordered_map<std::uint32_t, std::set<std::string>>, bool>>(in);
  try_decode<std::vector<std::pair<node, std::array<bool, 3>>>>(in);
  try_decode<std::vector<std::string>>(in);
  return 0;
}
