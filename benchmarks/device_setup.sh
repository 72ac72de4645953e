# Sourced on the GPU machine, from the repository root, after benchmarks/device_bundle.py
# built .device/ here and the run tool carried it there:
#     . benchmarks/device_setup.sh && python3 benchmarks/gpu_check.py
# Installs the carried wheels into $SITE (default /tmp/site) with no index and no dependencies
# (the machine's own torch, transformers and numpy stay), unpacks ffmpeg and ffprobe into
# $SITE/bin, and puts this checkout first on PYTHONPATH so its code is the one that runs.
SITE="${SITE:-/tmp/site}"
PY="${PYTHON:-python3}"
if [ ! -d .device/whl ] || [ ! -f .device/bin/ffmpeg.xz ]; then
  echo "device_setup: no .device/ here: run python3 benchmarks/device_bundle.py and carry .device" >&2
  return 2 2>/dev/null || exit 2
fi
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .device/whl/*.whl || { return 1 2>/dev/null || exit 1; }
mkdir -p "$SITE/bin"
for tool in ffmpeg ffprobe; do
  "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' ".device/bin/$tool.xz" "$SITE/bin/$tool" \
    && chmod +x "$SITE/bin/$tool" || { return 1 2>/dev/null || exit 1; }
done
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH"
