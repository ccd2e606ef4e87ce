#!/usr/bin/env bash
# Installs the Debian packages the sensor builds against and its tests use, when missing.
# Usage: scripts/install-deps.sh [build|test]   (test = build + the real tools tests run against)
set -euo pipefail
want=${1:-build}
build_pkgs=(libpcap-dev librdkafka-dev libmaxminddb-dev pkg-config publicsuffix)
test_pkgs=(tshark tcpdump wireshark-common nfdump kcat rsyslog rsyslog-gnutls rsyslog-openssl tcpreplay age mmdb-bin openssl iproute2 libcap2-bin time procps python3)
test_pkgs+=(systemd)  # systemd-analyze verify/security for Deploy/sensor.service
test_pkgs+=(chromium)  # headless browser for the `sensor report` page tests
test_pkgs+=(gzip zstd xz-utils)  # compressed captures: replay reads them through gzip -dc, zstd -dc, xz -dc
test_pkgs+=(dpkg-dev man-db passwd)  # scripts/package-deb.sh (dpkg-shlibdeps), man pages, the .deb's useradd
test_pkgs+=(prometheus)  # promtool check/test rules for Deploy/prometheus
pkgs=("${build_pkgs[@]}")
[ "$want" = test ] && pkgs+=("${test_pkgs[@]}")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "swift toolchain not found on PATH (expected Swift 6.x)" >&2; exit 1; }
