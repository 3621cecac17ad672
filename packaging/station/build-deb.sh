#!/usr/bin/env bash
# Builds the station's Debian package from a release `keyline` binary linked with
# --static-swift-stdlib (`make package` runs it): dist/keyline_<version>_amd64.deb, the version
# being what `keyline --version` prints. Refuses a binary that needs anything from the Swift
# toolchain at run time; Depends: comes from dpkg-shlibdeps (the system libraries it links:
# libpq, OpenSSL, libusb, libc, libstdc++), plus adduser for postinst.
#
#   packaging/station/build-deb.sh BINARY OUTPUT_DIR
# Prints the package's path as its last line.
set -euo pipefail

binary=${1:?usage: build-deb.sh BINARY OUTPUT_DIR}
output=${2:?usage: build-deb.sh BINARY OUTPUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

fail() { echo "build-deb: $*" >&2; exit 1; }
[ -x "$binary" ] || fail "no executable at $binary (run make package)"

version=$("$binary" --version) || fail "$binary --version failed"
# Debian's version syntax (deb-version(5)) for a native package: no revision, starts with a digit.
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || fail "keyline --version printed '$version', not a Debian version"

# Nothing from the toolchain: every library resolves outside /opt/swift (or wherever swift lives),
# none is missing, and no run path points into the toolchain.
# SWIFT_TOOLCHAIN (the Makefile passes the one its $(SWIFT) lives in) or the swift on PATH.
if [ -z "${SWIFT_TOOLCHAIN:-}" ]; then
    swift_path=$(command -v swift) || fail "no swift on PATH: set SWIFT_TOOLCHAIN to the toolchain's folder (e.g. /opt/swift/usr)"
    SWIFT_TOOLCHAIN=$(dirname "$(dirname "$(readlink -f "$swift_path")")")
fi
toolchain=$SWIFT_TOOLCHAIN
case "$toolchain" in /?*) ;; *) fail "SWIFT_TOOLCHAIN='$toolchain' is not an absolute folder" ;; esac
libraries=$(ldd "$binary") || fail "ldd $binary failed"
if grep -q "not found" <<<"$libraries"; then fail "$binary needs a library this host lacks:"$'\n'"$libraries"; fi
if grep -qF "$toolchain" <<<"$libraries" || grep -q "libswift\|libFoundation\|lib_Foundation\|libdispatch\|libBlocksRuntime" <<<"$libraries"; then
    fail "$binary links the Swift toolchain's libraries (build it with --static-swift-stdlib):"$'\n'"$libraries"
fi
if readelf -d "$binary" | grep -E "R(UN)?PATH" | grep -qF "$toolchain"; then
    fail "$binary has a run path into the toolchain ($toolchain): $(readelf -d "$binary" | grep -E 'R(UN)?PATH')"
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
root=$scratch/root
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/udev/rules.d" "$root/usr/lib/systemd/system" \
    "$root/usr/share/doc/keyline/examples"
install -d -m 0755 "$root/etc/keyline"

# Symbols stripped (lintian: unstripped-binary-or-object); the Swift metadata sections stay.
install -m 0755 "$binary" "$root/usr/bin/keyline"
strip --strip-unneeded --remove-section=.comment "$root/usr/bin/keyline"

install -m 0644 "$here/50-particle.rules" "$root/usr/lib/udev/rules.d/50-particle.rules"
install -m 0644 "$here/keyline-provision@.service" "$here/keyline-dashboard.service" "$root/usr/lib/systemd/system/"
install -m 0600 "$here/station.env" "$here/dashboard.env" "$root/etc/keyline/"
install -m 0644 "$here/README.station" "$root/usr/share/doc/keyline/README"
install -m 0644 "$here/copyright" "$root/usr/share/doc/keyline/copyright"
install -D -m 0644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/keyline"
install -m 0644 "$repo"/pipelines/*.yaml "$root/usr/share/doc/keyline/examples/"

commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
# The changelog's date: the commit's, so the same commit gives the same package.
date=$(git -C "$repo" log -1 --format=%aD 2>/dev/null || date -R)
sed -e "s/@VERSION@/$version/g" -e "s/@COMMIT@/$commit/g" -e "s/@DATE@/$date/g" "$here/changelog.in" \
    | gzip -9n > "$root/usr/share/doc/keyline/changelog.gz"
chmod 0644 "$root/usr/share/doc/keyline/changelog.gz"

install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$root/DEBIAN/"
install -m 0644 "$here/conffiles" "$root/DEBIAN/conffiles"

# dpkg-shlibdeps reads the package's name from a debian/control beside it.
mkdir -p "$scratch/src/debian"
printf 'Source: keyline\n\nPackage: keyline\nArchitecture: amd64\n' > "$scratch/src/debian/control"
shlibs=$(cd "$scratch/src" && dpkg-shlibdeps -O -e"$root/usr/bin/keyline" 2>"$scratch/shlibdeps.log") \
    || fail "dpkg-shlibdeps failed: $(cat "$scratch/shlibdeps.log")"
depends=${shlibs#shlibs:Depends=}
[ -n "$depends" ] || fail "dpkg-shlibdeps named no dependency"

installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@DEPENDS@/$depends/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
    "$here/control.in" > "$root/DEBIAN/control"

mkdir -p "$output"
deb=$output/keyline_${version}_amd64.deb
dpkg-deb --build --root-owner-group "$root" "$deb" >/dev/null
echo "$deb"
