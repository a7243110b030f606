// Feeds every file of one fuzz target's corpus (CORIO_FUZZ_CORPUS, set by meson.build) to
// its LLVMFuzzerTestOneInput, in every build (gcc, ASan, TSan), without libFuzzer. A crash
// input that a fuzzing run found is kept in the corpus, so it stays a regression test
// here whether or not clang is present.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

TEST_CASE("every input in the fuzz target's corpus is handled without a finding") {
  const std::filesystem::path dir = CORIO_FUZZ_CORPUS;
  REQUIRE(std::filesystem::is_directory(dir));
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  CHECK(!files.empty());
  for (const auto& f : files) {
    INFO("input: ", f.string());
    std::printf("replay: %s\n", f.c_str());  // named before it runs, should it crash
    std::fflush(stdout);
    std::ifstream in(f, std::ios::binary);
    REQUIRE(in);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // A copy of exactly the input's size, as libFuzzer gives it: reading past it is a
    // heap overflow under ASan.
    std::vector<std::uint8_t> exact(bytes.begin(), bytes.end());
    exact.shrink_to_fit();
    CHECK(LLVMFuzzerTestOneInput(exact.data(), exact.size()) == 0);
  }
}
