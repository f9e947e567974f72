#!/usr/bin/env bash
# Installs every Debian 12 package that pyoco's build, tests and benchmarks
# need. Idempotent: when everything is present it only checks, and it runs
# `apt-get update` at most once, only when something is missing.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config git clang-format
  # Boost 1.81 components (libboost1.81-all-dev lacks JSON and URL; the
  # component packages are smaller and cover everything we use)
  libboost1.81-dev libboost-log1.81-dev libboost-test1.81-dev
  libboost-json1.81-dev libboost-url1.81-dev libboost-filesystem1.81-dev
  libboost-thread1.81-dev libboost-system1.81-dev
  # formats, CLI, storage, crypto
  libtomlplusplus-dev libyaml-cpp-dev libcli11-dev libsqlite3-dev libssl-dev
  # cluster mode: client library and the server the tests start
  libnats-dev nats-server
  # observability: the Prometheus the metrics tests scrape with (and promtool)
  prometheus
  # the dashboard's browser tests: Debian's Chromium driven by chromedriver,
  # with colour emoji for the screenshots
  chromium chromium-driver fonts-noto-color-emoji
  # benchmark baseline
  libtbb-dev
  # Debian packages (cpack -G DEB, deb_package_test): dpkg-shlibdeps for
  # their Depends; systemd-analyze to verify the units
  dpkg-dev systemd
  # HTTP load on the gateway (tools/load.sh)
  wrk
  # fuzzing (fuzz/, tools/fuzz.sh): clang, and libFuzzer with clang's
  # sanitizer runtimes (libclang_rt.fuzzer-x86_64.a is in libclang-rt-14-dev,
  # which clang's packages only recommend, and we install without those)
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}" >&2
  echo "setup: run this script as root (or install them with sudo apt-get install)" >&2
  exit 1
fi

echo "setup: installing ${#missing[@]} missing packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
