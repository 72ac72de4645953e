"""The ranks' launcher: `python -m talkgen.ranks.agent GROUP_DIR NPROC`, run under render.python.

As torchtune's `tune run` does, it parses torchrun's own arguments and calls
`torch.distributed.run.run` in process: the elastic agent starts one rank per process
(`python -m talkgen.ranks.worker GROUP_DIR`) under this same interpreter, so the launcher and
every rank share one torch, and stops them all when one fails. The ranks serve job after
job until talkgen closes the group (see talkgen.ranks.worker). It runs on the far side of
the environment boundary, so it needs the standard library and torch alone. What happened
goes to ranks/agent.json for talkgen's side, which prints the user's one line.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path

LOGGERS = ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher")
STOPPED = 128 + signal.SIGTERM  # the exit status of a launcher stopped by a signal, as a shell reports it


def result_path(group_root: Path) -> Path:
    return group_root / "ranks" / "agent.json"


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send `sig` when the process that started this one dies (SIGKILL included),
    so no launcher or rank outlives the talkgen that started it. Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import os

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def main() -> None:
    die_with_parent()
    group_root, nproc = Path(sys.argv[1]), int(sys.argv[2])
    out = result_path(group_root)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args([
        "--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0", "--monitor-interval=0.2",
        f"--log-dir={group_root / 'ranks' / 'logs'}", "--redirects=3",  # ranks' own output goes to the logs, not the terminal
        "-m", "talkgen.ranks.worker", str(group_root),
    ])
    for name in LOGGERS:  # the elastic agent logs multi-line reports; talkgen prints its own one line
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    try:
        run(args)
    except ChildFailedError as exc:
        failures = {str(rank): {"exitcode": f.exitcode} for rank, f in exc.failures.items()}
        out.write_text(json.dumps({"failures": failures, "time": time.time()}) + "\n", encoding="utf-8")
        raise SystemExit(1) from None
    except SignalException as exc:
        # talkgen (or a scheduler) stopped the launcher, which has already stopped the ranks.
        out.write_text(json.dumps({"signal": int(exc.sigval), "time": time.time()}) + "\n", encoding="utf-8")
        raise SystemExit(STOPPED) from None
    out.write_text(json.dumps({"ok": True, "time": time.time()}) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
