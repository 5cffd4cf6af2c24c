#!/usr/bin/env bash
# Builds the container image: a static binary (glibc, static-pie), then a FROM scratch image
# holding it (deploy/Containerfile).
#
#   deploy/build-image.sh [IMAGE]        # default IMAGE: localhost/consentry:latest
#
# Needs podman (or `CONTAINER_TOOL=docker`). No registry is contacted: the image starts
# from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:-localhost/consentry:latest}"
tool="${CONTAINER_TOOL:-podman}"
target=x86_64-unknown-linux-gnu

RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$target" --bin consentry
binary="target/$target/release/consentry"
# A scratch image has no loader and no libraries: refuse a binary that would need them.
if readelf --program-headers "$binary" | grep -q INTERP || readelf --dynamic "$binary" | grep -q NEEDED; then
    echo "error: $binary is not statically linked" >&2
    exit 1
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/consentry"
# Owner-only from the start, as the server would make it: a new volume copies this mode.
mkdir -m 0700 "$context/data"
"$tool" build --pull=never --file deploy/Containerfile --tag "$image" "$context"
echo "built $image"
