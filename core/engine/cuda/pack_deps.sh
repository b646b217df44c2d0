#!/usr/bin/env bash
# Packs the header-only dependencies (Eigen, doctest, CLI11, nlohmann-json) from this
# machine's Debian packages into .deps/ (git-ignored, about 12 MB) so a machine with
# CUDA but without those packages (the GPU machine, which has no network) can build
# kvscope: carry .deps there and configure with -DCMAKE_PREFIX_PATH=$PWD/.deps.
# The top-level CMakeLists.txt adds .deps/include to the include path by itself.
set -euo pipefail
# The repository root: this script lives in core/engine/cuda/, three folders down.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
[[ -f "$root/CMakeLists.txt" && -d "$root/core/engine/cuda" ]] ||
    { echo "pack_deps: $root does not look like the kvscope root" >&2; exit 1; }
out="$root/.deps"
rm -rf "$out"
mkdir -p "$out/include" "$out/share/cmake" "$out/lib/cmake/doctest" "$out/share/eigen3"

# Headers.
cp -r /usr/include/eigen3 "$out/include/eigen3"
cp -r /usr/include/doctest /usr/include/CLI /usr/include/nlohmann "$out/include/"

# CMake package files. Eigen's, CLI11's and nlohmann-json's locate their headers
# relative to themselves; doctest's names /usr, so point it at .deps instead.
cp -r /usr/share/eigen3/cmake "$out/share/eigen3/cmake"
cp -r /usr/share/cmake/CLI11 /usr/share/cmake/nlohmann_json "$out/share/cmake/"
cp /usr/lib/cmake/doctest/*.cmake "$out/lib/cmake/doctest/"
sed -i 's|^set(_IMPORT_PREFIX "/usr")|get_filename_component(_IMPORT_PREFIX "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)|' \
    "$out/lib/cmake/doctest/doctestTargets.cmake"
grep -q 'CMAKE_CURRENT_LIST_DIR}/../../..' "$out/lib/cmake/doctest/doctestTargets.cmake" ||
    { echo "pack_deps: could not relocate doctestTargets.cmake" >&2; exit 1; }
du -sh "$out" >&2
