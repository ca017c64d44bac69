#!/usr/bin/env bash
# Rebuilds vendor/actix-http from the published crate named in patches/actix-http/SOURCE plus
# the patch files patches/actix-http/*.patch, applied in name order (docs/security.md,
# "The patched actix-http").
#
#   scripts/vendor-actix-http.sh           rebuild vendor/actix-http
#   scripts/vendor-actix-http.sh --check   fail (exit 1) when vendor/actix-http differs from
#                                          pristine + patches, naming the files (CI runs this)
#
# The pristine crate comes from cargo's own download cache; when it is not there, cargo fetches
# it from the registry through a throwaway manifest. Its SHA-256 must match SOURCE.
set -euo pipefail
cd "$(dirname "$0")/.."

src=patches/actix-http/SOURCE
name=$(sed -n 's/^name=//p' "$src")
version=$(sed -n 's/^version=//p' "$src")
sha=$(sed -n 's/^sha256=//p' "$src")
[ -n "$name" ] && [ -n "$version" ] && [ -n "$sha" ] || { echo "vendor: $src needs name=, version= and sha256=" >&2; exit 2; }
mode=${1:-rebuild}
case "$mode" in rebuild | --check) ;; *) echo "usage: $0 [--check]" >&2; exit 2 ;; esac

cargo_home=${CARGO_HOME:-$HOME/.cargo}
find_crate() { ls "$cargo_home"/registry/cache/*/"$name-$version.crate" 2>/dev/null | head -n 1; }
crate=$(find_crate)
if [ -z "$crate" ]; then
    echo "vendor: $name $version is not in cargo's cache; fetching it"
    tmp_manifest=$(mktemp -d)
    mkdir -p "$tmp_manifest/src" && : >"$tmp_manifest/src/lib.rs"
    printf '[package]\nname = "vendor-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = { version = "=%s", default-features = false }\n' \
        "$name" "$version" >"$tmp_manifest/Cargo.toml"
    (cd "$tmp_manifest" && cargo fetch -q)
    rm -rf "$tmp_manifest"
    crate=$(find_crate)
    [ -n "$crate" ] || { echo "vendor: cargo fetched no $name-$version.crate" >&2; exit 1; }
fi
got=$(sha256sum "$crate" | cut -d' ' -f1)
[ "$got" = "$sha" ] || { echo "vendor: $crate has SHA-256 $got, $src says $sha" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$crate" -C "$work"
tree="$work/$name-$version"
for p in patches/actix-http/*.patch; do
    [ -e "$p" ] || continue
    patch -s -p1 -d "$tree" --no-backup-if-mismatch -F 0 <"$p" || { echo "vendor: $p does not apply to $name $version" >&2; exit 1; }
done

if [ "$mode" = --check ]; then
    if ! diff -r -q "$tree" "vendor/$name"; then
        echo "vendor: vendor/$name differs from $name $version + patches/actix-http/*.patch:" \
            "put the change in a patch file and run scripts/vendor-actix-http.sh" >&2
        exit 1
    fi
    echo "vendor: vendor/$name is $name $version + $(ls patches/actix-http/*.patch 2>/dev/null | wc -l) patches"
    exit 0
fi
rm -rf "vendor/$name"
mkdir -p vendor
cp -a "$tree" "vendor/$name"
echo "vendor: vendor/$name rebuilt from $name $version + $(ls patches/actix-http/*.patch 2>/dev/null | wc -l) patches"
