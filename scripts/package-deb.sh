#!/usr/bin/env bash
# Builds the sensor's Debian package.
#
# Usage: scripts/package-deb.sh [--binary PATH] [--output DIR] [--fast]
#   --binary PATH  package this sensor executable instead of building one (release build with the Swift
#                  runtime linked statically: `swift build -c release --static-swift-stdlib`)
#   --output DIR   where the .deb goes (default: .build/deb)
#   --fast         gzip -1 instead of xz (tests)
# Prints the path of the .deb. Needs dpkg-dev (dpkg-shlibdeps), python3; no root (dpkg-deb --root-owner-group).
#
# Contents: /usr/bin/sensor; /etc/sensor/sensor.yaml (Deploy/sensor.example.yaml) and /etc/sensor/rules
# (Rules/) and /etc/logrotate.d/sensor as conffiles; the systemd unit (Deploy/sensor.service); a man page per command, generated
# from the binary's own argument parser (scripts/manpages.py); bash, zsh and fish completions from
# `sensor --generate-completion-script`; the Prometheus rules, Grafana dashboard, Elastic and Kafka
# helpers under /usr/share/sensor; maintainer scripts from Deploy/debian (the `sensor` system user,
# /var/lib/sensor and /var/log/sensor 0750).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
binary="" out="$repo/.build/deb" compress=(-Zxz)
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --output) out=$2; shift 2 ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    *) echo "usage: $0 [--binary PATH] [--output DIR] [--fast]" >&2; exit 2 ;;
  esac
done
for tool in dpkg-deb dpkg-shlibdeps python3 gzip strip; do
  command -v "$tool" >/dev/null || { echo "$tool not found (scripts/install-deps.sh test)" >&2; exit 2; }
done
if [ -z "$binary" ]; then
  swift build -c release --static-swift-stdlib --product sensor 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]' >&2 || true
  binary="$(swift build -c release --show-bin-path)/sensor"
fi
[ -x "$binary" ] || { echo "$binary: not an executable" >&2; exit 2; }

version=$("$binary" --version | awk 'NR == 1 { print $2 }')
commit=$("$binary" --version | awk -F': ' '$1 == "commit" { print $2 }')
arch=$(dpkg --print-architecture)
[ -n "$version" ] || { echo "$binary --version printed no version" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/etc/sensor" "$root/etc/logrotate.d" \
  "$root/usr/share/man/man1" "$root/usr/share/doc/sensor" "$root/usr/share/sensor" \
  "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d"

install -m 0755 "$binary" "$root/usr/bin/sensor"
strip --strip-unneeded "$root/usr/bin/sensor"
install -m 0644 Deploy/sensor.service "$root/usr/lib/systemd/system/sensor.service"
install -m 0640 Deploy/sensor.example.yaml "$root/etc/sensor/sensor.yaml"
cp -r Rules "$root/etc/sensor/rules"
install -m 0644 Deploy/logrotate.d/sensor "$root/etc/logrotate.d/sensor"
find "$root/etc/sensor/rules" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +

# Man pages and completions come from the binary being packaged.
python3 scripts/manpages.py "$binary" "$work/man" >/dev/null
for page in "$work"/man/*.1; do gzip -9n -c "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"; done
"$binary" --generate-completion-script bash > "$root/usr/share/bash-completion/completions/sensor"
"$binary" --generate-completion-script zsh > "$root/usr/share/zsh/vendor-completions/_sensor"
"$binary" --generate-completion-script fish > "$root/usr/share/fish/vendor_completions.d/sensor.fish"

install -m 0644 README.md Deploy/CHECKLIST.md "$root/usr/share/doc/sensor/"
cat > "$root/usr/share/doc/sensor/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: sensor
Comment: built from commit $commit
EOF
cp -r Deploy/prometheus Deploy/elastic "$root/usr/share/sensor/"
install -m 0755 Deploy/kafka-topics.sh "$root/usr/share/sensor/kafka-topics.sh"
find "$root/usr/share" -type d -exec chmod 0755 {} + -o -type f ! -name '*.sh' -exec chmod 0644 {} +

for script in postinst prerm postrm; do install -m 0755 "Deploy/debian/$script" "$root/DEBIAN/$script"; done
(cd "$root" && find etc -type f | sort | sed 's#^#/#') > "$root/DEBIAN/conffiles"

# Shared-library dependencies the Debian way; libraries no package provides (a Swift runtime linked
# dynamically, as in a debug build) are named, since the package will not run without them.
mkdir -p "$work/shlibs/debian"
printf 'Source: sensor\n\nPackage: sensor\nArchitecture: any\n' > "$work/shlibs/debian/control"
depends=$(cd "$work/shlibs" && dpkg-shlibdeps -O --ignore-missing-info "$root/usr/bin/sensor" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
foreign=$( (ldd "$root/usr/bin/sensor" 2>/dev/null || true) | awk '$3 ~ /^\// { print $3 }' | while read -r lib; do
  dpkg -S "$(readlink -f "$lib")" >/dev/null 2>&1 || dpkg -S "$lib" >/dev/null 2>&1 || echo "$lib"
done)
if [ -n "$foreign" ]; then
  echo "warning: the binary needs libraries no Debian package provides (package a release build):" >&2
  echo "$foreign" | sed 's/^/  /' >&2
fi

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: sensor
Version: $version
Architecture: $arch
Maintainer: Sensor maintainers <sensor@localhost>
Installed-Size: $size
Depends: ${depends:+$depends, }passwd
Recommends: gzip, zstd, xz-utils, age
Section: net
Priority: optional
Homepage: file:///usr/share/doc/sensor/README.md
Description: real-time network security sensor (SPAN/tap and pcap)
 Decodes traffic from a SPAN or tap port (or capture files), tracks flows, runs
 protocol analysers and detectors (lateral movement, C2, beaconing, DNS
 tunnelling, threat intelligence) and writes ECS JSON events to files, Kafka
 or syslog, with alert-triggered encrypted evidence capture.
 .
 Built from commit $commit.
EOF
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's#^\./##' | sort | xargs -d '\n' md5sum) > "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/sensor_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >/dev/null
echo "$deb"
