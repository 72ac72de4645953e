"""talkgen's command line run inside the test process, through typer's CliRunner.

For the tests about what a command prints, writes and exits with, not about the process that
runs it: no interpreter to start and no torch to import for each call. What is about the process
(signals, a kill and its resume, --help staying light, chat at a terminal) keeps `python -m talkgen`.

The result has the fields of subprocess.run's, so a test reads it the same way. An exception that
escapes the command fails the test with its traceback, as one printed by `python -m talkgen` would.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from talkgen import media
from talkgen.cli import app

FFMPEG_SETTINGS = ("TALKGEN_FFMPEG", "TALKGEN_FFPROBE")  # what media.require_ffmpeg's cached answer depends on


def talkgen(args: list[str], cwd: Path, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """`talkgen ARGS` in `cwd`, with `env` added to the environment for the call (a value of None removes it)."""
    env = {"CUDA_DEVICE_ORDER": os.environ.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID"), **(env or {})}  # as cli.main sets it
    other_ffmpeg = any(k in env for k in FFMPEG_SETTINGS)
    if other_ffmpeg:
        media.require_ffmpeg.cache_clear()
    try:
        with contextlib.chdir(cwd):
            result = CliRunner().invoke(app, [str(a) for a in args], env=env, input=input, catch_exceptions=False,
                                        prog_name="talkgen")
    finally:
        if other_ffmpeg:
            media.require_ffmpeg.cache_clear()
    return subprocess.CompletedProcess(["talkgen", *map(str, args)], result.exit_code, result.stdout, result.stderr)
