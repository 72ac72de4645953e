#!/usr/bin/env bash
# Re-fetches the vendored hls.js from the npm registry and checks it before copying it here.
#   talkgen/server/page/vendor/update.sh            # the pinned version below
#   talkgen/server/page/vendor/update.sh 1.7.5      # another version: then update VERSION and INTEGRITY
# The page loads no script from a CDN at run time; this is the only way hls.min.js changes.
set -euo pipefail
VERSION="${1:-1.7.4}"
# `npm view hls.js@1.7.4 dist.integrity`, recorded when 1.7.4 was vendored: a registry that
# later serves other bytes for the same version is refused.
PINNED_VERSION="1.7.4"
PINNED_INTEGRITY="sha512-3GlxGdPvT2YHvQYOt+yOzT/DEior/qJVNIylHA77kgeoBTdQQqi70GwefNEUmHQeNGyjC8U62+bruqW/Tpm+tg=="

here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

expected="$(npm view "hls.js@$VERSION" dist.integrity)"
if [ "$VERSION" = "$PINNED_VERSION" ] && [ "$expected" != "$PINNED_INTEGRITY" ]; then
  echo "update.sh: the registry's integrity for hls.js@$VERSION is $expected, not the recorded $PINNED_INTEGRITY; refusing" >&2
  exit 1
fi
tarball="$(npm pack --silent "hls.js@$VERSION")"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$expected" ]; then
  echo "update.sh: $tarball hashes to $actual, but the registry says $expected; refusing" >&2
  exit 1
fi
tar xzf "$tarball" package/dist/hls.min.js package/LICENSE
cp package/dist/hls.min.js "$here/hls.min.js"
cp package/LICENSE "$here/hls.js-LICENSE"
echo "hls.js $VERSION ($actual) -> $here/hls.min.js"
