// kernel_features: the list of probed features, and CORIO_DISABLE_FEATURES (parsed, applied
// to the loop, refused when it names an unknown feature). Registered twice in meson: as
// is (the suite runs with and without CORIO_DISABLE_FEATURES=all) and with a bad value.
#include <doctest/doctest.h>

#include <corio/runtime/kernel_features.hpp>
#include <corio/runtime/loop.hpp>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

constexpr std::string_view valid_names =
    "all, single_issuer, defer_taskrun, coop_taskrun, taskrun_flag, cancel_any, msg_ring, multishot_accept, "
    "recv_poll_first, futex_wait, futex_waitv, rwf_nosignal, pidfd, registered_ring, provided_buffers, recv_multishot";

// What the process's variable says, parsed independently of the library.
std::string_view variable() {
  const char* v = std::getenv("CORIO_DISABLE_FEATURES");
  return v == nullptr ? std::string_view{} : std::string_view{v};
}

}  // namespace

TEST_CASE("parse_disabled_features reads names, commas, spaces and `all`") {
  using corio::detail::parse_disabled_features;
  CHECK(parse_disabled_features("") == 0u);
  CHECK(parse_disabled_features("single_issuer") == 1u);
  CHECK(parse_disabled_features("futex_wait, msg_ring") == ((1u << 8) | (1u << 5)));
  CHECK(parse_disabled_features(",pidfd,,") == (1u << 11));
  CHECK(parse_disabled_features("recv_multishot") == (1u << 14));
  CHECK(parse_disabled_features("all") == (1u << corio::kernel_feature_count) - 1);
}

TEST_CASE("an unknown feature name is refused with the list of valid names") {
  CHECK_THROWS_WITH_AS((void)corio::detail::parse_disabled_features("futex_wait,futex_op"),
                       ("CORIO_DISABLE_FEATURES: unknown feature \"futex_op\"; valid names: " + std::string(valid_names))
                           .c_str(),
                       std::invalid_argument);
}

TEST_CASE("the loop and kernel_features() follow this process's CORIO_DISABLE_FEATURES") {
  std::uint32_t mask = 0;
  bool valid = true;
  try {
    mask = corio::detail::parse_disabled_features(variable());
  } catch (const std::invalid_argument&) {
    valid = false;
  }
  if (!valid) {
    // Registered in meson with a bad value: every entry point refuses it, by name.
    CHECK_THROWS_AS(corio::loop{}, std::invalid_argument);
    CHECK_THROWS_AS((void)corio::kernel_features(), std::invalid_argument);
    CHECK_THROWS_AS((void)corio::kernel_feature_on(corio::kernel_feature::msg_ring), std::invalid_argument);
    CHECK(corio::detail::kernel_feature_disabled_noexcept(corio::kernel_feature::pidfd));
    return;
  }
  const auto features = corio::kernel_features();
  REQUIRE(features.size() == corio::kernel_feature_count);
  std::string names = "all";
  for (std::size_t i = 0; i < features.size(); ++i) {
    const corio::kernel_feature_status& f = features[i];
    CAPTURE(f.name);
    CHECK(static_cast<std::size_t>(f.feature) == i);
    CHECK(f.name == corio::to_string(f.feature));
    CHECK(f.needs.starts_with("Linux "));
    CHECK(f.disabled == ((mask >> i) & 1u));
    CHECK(f.on() == (f.supported && !f.disabled));
    CHECK(corio::kernel_feature_on(f.feature) == f.on());
    names += ", " + std::string(f.name);
  }
  CHECK(names == valid_names);
  corio::loop lp;
  using corio::kernel_feature;
  const auto& granted = lp.features();
  auto off = [&](kernel_feature f) { return (mask >> static_cast<unsigned>(f)) & 1u; };
  if (off(kernel_feature::defer_taskrun)) CHECK_FALSE(granted.defer_taskrun);
  if (off(kernel_feature::single_issuer)) CHECK_FALSE(granted.single_issuer);
  if (off(kernel_feature::coop_taskrun)) CHECK_FALSE(granted.coop_taskrun);
  CHECK(granted.cancel_any == corio::kernel_feature_on(kernel_feature::cancel_any));
  CHECK(granted.registered_ring == corio::kernel_feature_on(kernel_feature::registered_ring));
}
