"""Device strings of the placement section, and releasing memory between stages and jobs."""

from __future__ import annotations

import os
import re
import sys

from talkgen.errors import UsageError

_ONE = re.compile(r"^(cpu|cuda|cuda:\d+)$")
_MANY = re.compile(r"^(cpu|cuda|cuda:\d+(,\d+)*)$")


def check_device(engine: str, device: str, many: bool = False) -> None:
    if not isinstance(device, str) or not (_MANY if many else _ONE).match(device):
        example = "cpu, cuda or cuda:0,1,2,3,4" if many else "cpu, cuda or cuda:N"
        raise UsageError(f"placement.{engine} '{device}' is not a device: use {example}")


def gpu_indices(device: str) -> list[int] | None:
    """The GPU indices a device string names: [] for cpu, None for 'cuda' (all visible)."""
    if device == "cpu":
        return []
    if device == "cuda":
        return None
    return [int(i) for i in device.split(":", 1)[1].split(",")]


def avatar_gpus(device: str) -> str:
    """The avatar ranks' GPUs as placement numbers them (cuda:N): blank means every GPU."""
    indices = gpu_indices(device)
    return ",".join(str(i) for i in indices) if indices else ""


def runs_in_ranks(render) -> bool:
    """Whether the avatar renders in launched ranks rather than in talkgen's own process:
    several ranks, the torchrun launcher asked for, or another Python (render.python)."""
    return render.nproc > 1 or render.launcher == "torchrun" or bool(render.python)


def rank_visible_devices(gpus: str) -> str | None:
    """CUDA_VISIBLE_DEVICES for the avatar ranks, or None to leave theirs as talkgen's own.

    Placement counts within talkgen's own CUDA_VISIBLE_DEVICES, as torch does, so under
    CUDA_VISIBLE_DEVICES=4,5,6,7 the ranks of cuda:0,1 get 4,5: a scheduler's choice of GPUs
    is kept, never widened.
    """
    if not gpus:
        return None
    outer = os.environ.get("CUDA_VISIBLE_DEVICES")
    if outer is None:
        return gpus
    entries = [e.strip() for e in outer.split(",") if e.strip()]
    picked = []
    for i in (int(x) for x in gpus.split(",")):
        if i >= len(entries):
            raise UsageError(f"placement.avatar names GPU {i}, but CUDA_VISIBLE_DEVICES='{outer}' shows {len(entries)}: "
                             "cuda:N counts within it, so name GPUs from 0 to one less than that, or unset the variable")
        picked.append(entries[i])
    return ",".join(picked)


def release(collect: bool = True) -> None:
    """Free what a finished stage's engine held, so the next engine can have its GPU.

    collect=False when no engine was let go: a full collection costs 0.2 s in a process
    holding torch and transformers (a second per job in a warm batch worker), and frees
    nothing that reference counting has not already freed. Only when torch is already
    imported: importing it here would cost seconds for nothing.
    """
    import gc

    if collect:
        gc.collect()
    torch = sys.modules.get("torch")
    # Another stage's thread may be importing torch right now: a module half imported has no cuda yet.
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    if cuda is not None and getattr(cuda, "is_initialized", lambda: False)():
        cuda.empty_cache()


def trim_heap() -> bool:
    """Hand the memory a finished job freed back to the system (glibc's malloc_trim); whether it could.

    glibc keeps freed memory in its heaps for reuse, and a warm worker's jobs free it in pieces
    (a voice's session made anew for each job, the frames, the LLM's caches): the pages between
    what is still held are never returned. Measured here, 12 reply jobs in one worker: RSS 1,326
    -> 2,091 MiB without this after each job, 1,266 -> 1,468-1,628 MiB with it."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False  # not glibc (musl has no malloc_trim)
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


def gpus_held(recipe) -> int:
    """How many GPUs the placement holds for the job: what the cost report bills."""
    held: set[int] = set()
    p = recipe.placement
    for engine in ("stt", "llm", "tts", "avatar"):
        indices = gpu_indices(getattr(p, engine))
        if indices is None:  # plain "cuda": GPU 0, or the first nproc GPUs for the avatar's ranks
            indices = list(range(recipe.render.nproc if engine == "avatar" else 1))
        held.update(indices)
    return len(held)
