#!/usr/bin/env bash
# Render the demo video offline on the embedded default (CPU, no downloads):
# the avatar answers the four questions in examples/script.txt.
# Usage: examples/demo.sh [OUTPUT.mp4]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-demo.mp4}"
talkgen render "$here/script.txt" -o "$out"   # the avatar answers the questions in script.txt
echo "wrote $out, ${out%.mp4}.srt and ${out%.mp4}.report.json" >&2
