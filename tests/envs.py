"""Other Python environments for the tests of render.python, built once per machine.

- `far_python()`: Python 3.11 with a stack that conflicts with talkgen's own, as LiveAvatar's
  does: torch 2.13.0 (a CPU build these machines hold, no download), numpy<2 and
  transformers 4.51.3. talkgen itself is not installed there.
- `py310_python()`: Python 3.10 (pyenv's) with numpy<2 and no torch: the far-side code must
  import and run its torch-free parts there, and a torch-less Python must be refused.
- `pyenv_python("3.9")`: a Python too old for the ranks.

They are built once per machine, outside the checkout: under $TALKGEN_TEST_ENVS, else
~/.cache/talkgen-test-envs/ (XDG_CACHE_HOME is honoured), in a folder named for what it holds
(the base interpreter, its version and the package list), so a fresh clone, a CI run or a
worktree reuses them and a changed package list builds a new one beside the old. A ".ready"
file marks one that finished building, so an interrupted build is redone; a lock file keeps
two test runs on one machine from building the same one at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ENVS = Path(os.environ.get("TALKGEN_TEST_ENVS") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "talkgen-test-envs")
FAR_PACKAGES = ["torch==2.13.0", "numpy<2", "transformers==4.51.3", "pillow"]  # pillow: LiveAvatar's stand-in reads its image with it
PY310_PACKAGES = ["numpy<2"]


def pyenv_python(version: str) -> Path | None:
    """pyenv's newest `version`.x interpreter on this machine, if it has one."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted(root.glob(f"{version}.*/bin/python{version}"))
    return found[-1] if found else None


def _venv(base: Path, packages: list[str], name: str) -> Path:
    version = subprocess.run([str(base), "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True).stdout
    tag = hashlib.sha256(f"{base.resolve()}|{version.strip()}|{' '.join(packages)}".encode()).hexdigest()[:10]
    home = ENVS / f"{name}-{tag}"
    python = home / "bin" / "python"
    ENVS.mkdir(parents=True, exist_ok=True)
    with open(ENVS / f"{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run building this one: wait for it, then use it
        if (home / ".ready").is_file() and python.exists():
            return python
        shutil.rmtree(home, ignore_errors=True)
        subprocess.run([str(base), "-m", "venv", str(home)], check=True, capture_output=True, timeout=300)
        proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"building the test environment {home} failed: {proc.stderr[-2000:]}")
        (home / ".ready").write_text(" ".join(packages) + "\n")
    return python


def far_python() -> Path:
    return _venv(Path(sys.executable), FAR_PACKAGES, "far")


def py310_python() -> Path:
    base = pyenv_python("3.10")
    if base is None:
        pytest.skip("this machine has no Python 3.10 under pyenv")
    return _venv(base, PY310_PACKAGES, "py310")
