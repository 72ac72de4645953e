"""The Python the avatar ranks run under (render.python), how it finds talkgen's code, and
what it must have, checked before anything loads.

A back end such as LiveAvatar needs its own environment (another Python, torch and
transformers than talkgen's), so its ranks, and the launcher that must share their torch,
run under that environment's interpreter. They find talkgen's code through one mechanism,
the same for every back end and for talkgen's own interpreter: a private folder holding
a single link, `talkgen`, to the package this process runs from, put first on the far
side's PYTHONPATH and made its working directory. Nothing else of talkgen's environment
(transformers 5, typer, rich, OpenCV) is visible there, so the rank code must and does
import only the standard library, numpy, torch and the back end's own packages.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from talkgen.errors import TalkgenError, UsageError

MIN_PYTHON = (3, 10)
PROBE_TIMEOUT_S = 300  # importing LiveAvatar's pipeline (diffusers, deepspeed, ...) takes a while on a cold disk
# Run by any Python, even 2.7: report the version, and run the probe only where it can run.
BOOT = (
    "import sys, json\n"
    "if sys.version_info[:2] < (%d, %d):\n"
    "    print(json.dumps({'python': '.'.join(str(v) for v in sys.version_info[:3]), 'executable': sys.executable, 'too_old': True}))\n"
    "else:\n"
    "    import runpy\n"
    "    sys.argv = ['talkgen.ranks.probe'] + sys.argv[1:]\n"
    "    runpy.run_module('talkgen.ranks.probe', run_name='__main__', alter_sys=True)\n"
) % MIN_PYTHON


def rank_python(config) -> str:
    """render.python as an absolute path (symlinks kept: a venv's python is a link), else talkgen's own."""
    if not config.python:
        return sys.executable
    return os.path.abspath(os.path.expanduser(config.python))


def who(config) -> str:
    """How a message names the ranks' interpreter."""
    return f"render.python={rank_python(config)}" if config.python else f"talkgen's own Python ({sys.executable})"


@functools.cache
def code_path() -> Path:
    """The folder the far side imports talkgen from: one link to this process's talkgen package."""
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="talkgen-rank-path-"))
    (folder / "talkgen").symlink_to(Path(__file__).resolve().parents[1], target_is_directory=True)
    atexit.register(shutil.rmtree, folder, True)
    return folder


def far_env(devices: str | None = None) -> dict:
    """The environment of every far-side process: talkgen's code first on its path, the
    ranks' GPUs, one thread per rank unless the user says otherwise (torchrun would warn
    and do the same)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(code_path()), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("PYTHON_EXEC", None)  # torchrun would start the ranks under that instead of the launcher's own Python
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices  # the ranks inherit it; local rank i takes the i-th
    return env


def probe(config) -> dict:
    """What the ranks' Python has, as talkgen.ranks.probe reports it; one line if it does not run at all."""
    from talkgen.placement import rank_visible_devices

    python = rank_python(config)
    name = who(config)
    if not os.path.exists(python):
        raise UsageError(f"{name} does not exist: set it to the python of the avatar's environment "
                         "(e.g. /opt/envs/liveavatar/bin/python), or leave it blank for talkgen's own")
    if os.path.isdir(python) or not os.access(python, os.X_OK):
        raise UsageError(f"{name} is not an executable file: set it to the environment's bin/python")
    spec = {"engine": config.engine, "device": config.device, "nproc": config.nproc}
    if config.engine == "liveavatar":
        from talkgen.engines.liveavatar import checkout_dir

        root = checkout_dir(config.liveavatar)
        spec["checkout"] = str(root.resolve()) if root else ""
    try:
        proc = subprocess.run([python, "-c", BOOT, json.dumps(spec)], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              env=far_env(rank_visible_devices(config.gpus)), cwd=code_path(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TalkgenError(f"{name} did not answer within {PROBE_TIMEOUT_S} s when asked what it has: "
                           f"run `{python} -c 'import torch'` to see what hangs") from None
    except OSError as exc:
        raise UsageError(f"{name} is not a Python interpreter ({exc.strerror}): set it to the environment's bin/python") from None
    found = _last_json(proc.stdout)
    if found is None:
        said = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()[-1][:200]
        raise UsageError(f"{name} is not a Python interpreter talkgen can use ({said}): set it to the environment's bin/python")
    return found


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "python" in value:
            return value
    return None


def problems(config, found: dict) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the ranks' Python for this render config, each one line."""
    name, python = who(config), rank_python(config)
    errors: list[str] = []
    warnings: list[str] = []
    if found.get("too_old"):
        return [f"{name} is Python {found['python']}: the avatar ranks need Python "
                f"{'.'.join(map(str, MIN_PYTHON))} or newer: point render.python at a newer environment"], []
    if not found["numpy"]["ok"]:
        errors.append(f"{name} has no numpy ({found['numpy']['error']}): install it there ({python} -m pip install numpy)")
    if not found["torch"]["ok"]:
        errors.append(f"{name} has no torch ({found['torch']['error']}): install the back end's torch there "
                      f"({python} -m pip install torch, or as the back end's README says)")
        return errors, warnings
    torch_version = found["torch"]["version"]
    if found.get("talkgen"):
        bad = found["talkgen"]
        errors.append(f"{name}: talkgen's rank code does not import there ({bad['module']}: {bad['error']}): "
                      "the ranks need only the standard library, numpy and torch beside the back end's packages")
    if config.device == "cuda":
        cuda = found.get("cuda", {})
        seen = len(cuda.get("devices", []))
        if seen < config.nproc:
            build = f"CUDA {cuda['build']}" if cuda.get("build") else "a CPU build"
            why = f"; {cuda['error']}" if cuda.get("error") else ""
            errors.append(f"{name}: its torch {torch_version} ({build}) sees {seen} GPU(s), the placement needs {config.nproc} "
                          f"(GPUs {config.gpus or 'all'}){why}: install a CUDA build of torch there that matches the driver")
        elif config.dtype == "bfloat16" and cuda.get("bf16") is False:
            fix = ("LiveAvatar runs only in bfloat16: use GPUs of compute capability 8.0 or newer" if config.engine == "liveavatar"
                   else "set render.dtype=float16 or use GPUs of compute capability 8.0 or newer")
            errors.append(f"{name}: its torch {torch_version} has no bfloat16 on these GPUs: {fix}")
        elif config.engine == "liveavatar" and config.liveavatar.fp8:
            old = [f"GPU {i} ({d['name']}, compute {d['capability'][0]}.{d['capability'][1]})"
                   for i, d in enumerate(cuda["devices"][: config.nproc]) if tuple(d["capability"]) < (8, 9)]
            if old:
                errors.append(f"{name}: render.liveavatar.fp8 needs compute capability 8.9 or newer, and {', '.join(old)} "
                              "has less: set render.liveavatar.fp8=false")
    backend = "nccl" if config.device == "cuda" else "gloo"
    if not errors and not found.get("distributed", {}).get(backend):
        errors.append(f"{name}: its torch {torch_version} has no {backend} backend for the ranks' process group: "
                      "install a torch build with torch.distributed")
    la = found.get("liveavatar")
    if la is not None:
        if la["import"] and not config.python:
            from talkgen.avatar_env import how_to_set

            errors.append(f"{name} cannot import LiveAvatar from {la['checkout'] or 'its path'} ({la['import']['module']}: "
                          f"{la['import']['error']}): LiveAvatar needs a Python environment of its own; {how_to_set(config.engine)}")
        elif la["import"]:
            errors.append(f"{name} cannot import LiveAvatar from {la['checkout'] or 'its path'} ({la['import']['module']}: "
                          f"{la['import']['error']}): install its requirements there ({python} -m pip install -r "
                          f"{la['checkout'] or 'LiveAvatar'}/requirements.txt)")
        if not la["flash_attn"]:
            message = (f"{name} has neither flash_attn_3 nor flash-attn, which every attention block of LiveAvatar calls: "
                       "install flash_attn_3 (Hopper) or flash-attn==2.8.3 there, built for its torch")
            (errors if config.device == "cuda" else warnings).append(message)
        if config.liveavatar.fp8 and not found.get("fp8_matmul"):
            errors.append(f"{name}: its torch {torch_version} has no FP8 matmul (torch._scaled_mm): "
                          "set render.liveavatar.fp8=false or install a newer torch there")
    return errors, warnings


def needs_probe(config) -> bool:
    """Whether the avatar's Python must be asked before a render: it is another Python than
    talkgen's, or the back end needs packages talkgen's own environment does not hold
    (LiveAvatar's requirements, which pip cannot install beside talkgen's)."""
    return bool(config.python) or config.engine == "liveavatar"


# Environments that passed, by what was asked of them: a warm batch worker asks once, not per job.
_PASSED: dict[str, dict] = {}


def check_rank_python(config) -> dict:
    """Probe the ranks' Python and raise one line for the first thing that stops a render."""
    import dataclasses

    asked = json.dumps([rank_python(config), dataclasses.asdict(config)], sort_keys=True, default=str)
    if asked in _PASSED:
        return _PASSED[asked]
    found = probe(config)
    errors, _ = problems(config, found)
    if errors:
        raise TalkgenError(errors[0])
    _PASSED[asked] = found
    return found
