#!/usr/bin/env bash
# Install test: `meson install` a build into a scratch DESTDIR, then build hello.cpp out
# of tree with nothing but `pkg-config corio`, run it, and check its output; then the same
# with nothing but CMake's `find_package(corio)` (tests/install/CMakeLists.txt). Proves that
# the installed headers are complete, that corio.pc carries every flag a user needs
# (including -std=c++20), and that the program uses the installed copy, not the build tree.
#
# Usage: tests/install/run.sh BUILDDIR      (exit 0: pass, 1: fail)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
[[ $# -eq 1 ]] || { echo "usage: $0 BUILDDIR" >&2; exit 2; }
builddir=$(cd "$1" && pwd)

fail() { echo "install test: FAIL: $*" >&2; exit 1; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/corio-install.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
destdir=$scratch/root

# DESTDIR keeps the build's own prefix (/usr/local by default) but roots it in scratch,
# so the test never touches the system and needs no separate build.
meson install -C "$builddir" --destdir "$destdir" --quiet >"$scratch/install.log" 2>&1 \
    || { cat "$scratch/install.log" >&2; fail "meson install -C $builddir failed"; }

pc=$(find "$destdir" -name corio.pc -print -quit 2>/dev/null || true)
[[ -n "$pc" ]] || fail "no corio.pc was installed under $destdir"

# The .pc file names paths under its prefix (e.g. /usr/local); point the prefix into
# DESTDIR. PKG_CONFIG_PATH puts this corio.pc ahead of any copy installed on the system.
export PKG_CONFIG_PATH=$(dirname "$pc")
prefix=$(pkg-config --variable=prefix corio) || fail "pkg-config cannot read $pc"
pkgconf=(pkg-config --define-variable=prefix="$destdir$prefix")
cflags=$("${pkgconf[@]}" --cflags corio)
libs=$("${pkgconf[@]}" --libs corio)
libdir=$("${pkgconf[@]}" --variable=libdir corio)
[[ "$libdir" == "$destdir"/* ]] || fail "libdir $libdir is not under the install root"
for header in generator.hpp task.hpp sync_wait.hpp; do
    found=$(find "$destdir" -path "*/corio/coro/$header" -print -quit)
    [[ -n "$found" ]] || fail "corio/coro/$header was not installed"
done

# No -std here on purpose: corio.pc must supply it. --no-as-needed keeps libcorio in
# the program's NEEDED list even if hello happens to use only header code, so the check
# below always sees which libcorio the loader picks.
cxx=${CXX:-g++}
# shellcheck disable=SC2086  # pkg-config output is a list of words
"$cxx" -o "$scratch/hello" "$here/hello.cpp" $cflags -MD -MF "$scratch/hello.d" \
    -Wl,--no-as-needed $libs >"$scratch/build.log" 2>&1 || {
    cat "$scratch/build.log" >&2
    fail "hello.cpp does not compile/link with: $cxx \$(pkg-config --cflags --libs corio) = $cflags $libs"
}

# Every corio header the compiler read must come from the install root: a path into the
# source tree or a build directory means the installed headers are incomplete.
deps=$(tr ' \\' '\n\n' <"$scratch/hello.d" | grep -E '\.(h|hpp)$' || true)
leaked=$(awk -v a="$repo/" -v b="$builddir/" 'index($0, a) == 1 || index($0, b) == 1' <<<"$deps")
[[ -z "$leaked" ]] || fail "hello.cpp read headers outside the install root:
$leaked"
awk -v d="$destdir/" 'index($0, d) == 1 && /\/corio\/coro\/generator\.hpp$/ {found = 1}
                      END {exit !found}' <<<"$deps" \
    || fail "hello.cpp did not read corio/coro/generator.hpp from $destdir"

# The loader must resolve libcorio from the install root (no RPATH into the build tree).
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
runpath=$(readelf -d "$scratch/hello" | grep -E 'R(UN)?PATH' || true)
[[ -z "$runpath" ]] || fail "hello has an RPATH/RUNPATH: $runpath"
resolved=$(ldd "$scratch/hello" | awk '/libcorio/ {print $3}')
[[ -n "$resolved" ]] || fail "hello does not link libcorio: $(ldd "$scratch/hello")"
[[ "$resolved" == "$libdir"/* ]] || fail "libcorio resolves to $resolved, not to the installed $libdir"

expected="hello corio: jumping_range 0 3 4 5 6 7 8 9; answer 84; squares 1 4 9"
actual=$("$scratch/hello" 2>&1) || fail "hello exited with status $?; output:
$actual"
[[ "$actual" == "$expected" ]] || fail "unexpected output
  got:      $actual
  expected: $expected"

# The CMake package: find_package(corio) -> corio::corio, from the same install root.
cmake -S "$here" -B "$scratch/cmake-build" -DCMAKE_PREFIX_PATH="$destdir$prefix" \
    -DCMAKE_CXX_COMPILER="$(command -v "$cxx")" >"$scratch/cmake.log" 2>&1 \
    && cmake --build "$scratch/cmake-build" >>"$scratch/cmake.log" 2>&1 \
    || { cat "$scratch/cmake.log" >&2; fail "hello.cpp does not build with find_package(corio)"; }
grep -q "corio_DIR:PATH=$destdir" "$scratch/cmake-build/CMakeCache.txt" \
    || fail "find_package(corio) found a corio outside the install root: $(grep corio_DIR "$scratch/cmake-build/CMakeCache.txt")"
resolved=$(ldd "$scratch/cmake-build/hello" | awk '/libcorio/ {print $3}')
[[ "$resolved" == "$libdir"/* ]] || fail "the CMake-built hello resolves libcorio to $resolved, not to $libdir"
actual=$("$scratch/cmake-build/hello" 2>&1) || fail "the CMake-built hello exited with status $?; output:
$actual"
[[ "$actual" == "$expected" ]] || fail "unexpected output from the CMake-built hello
  got:      $actual
  expected: $expected"

echo "install test: OK (hello built with pkg-config corio alone and with find_package(corio) alone, both ran against the installed libcorio)"
