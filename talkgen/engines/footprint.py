"""What an engine needs on a GPU, known before it is loaded: the numbers each back end's
memory rule (its BACKEND.memory, engines/registry.py) gives the memory planner (talkgen.memory).

An engine needs about params x bytes-per-param x (1 + ACTIVATIONS); the parameter count
comes from the weights on disk (safetensors headers, or a lazily mapped torch checkpoint)
or, before a pull, from the manifest's `params`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

GIB = 1024**3
ACTIVATIONS = 0.2  # activations, KV cache and workspace for the sizes talkgen runs, on top of weights
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}


@dataclass
class Need:
    engine: str  # stt, llm, tts, avatar
    model: str
    device: str  # the placement string
    gib: float  # per GPU it is placed on
    params: int = 0
    dtype: str = ""
    source: str = ""  # where the parameter count came from


def count_safetensors(path: Path) -> int:
    """Parameters in a .safetensors file, from its JSON header alone."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    total = 0
    for name, meta in header.items():
        if name == "__metadata__" or not meta.get("dtype", "").startswith(("F", "BF")):
            continue  # integer tensors are counters and indices, not weights
        count = 1
        for d in meta["shape"]:
            count *= d
        total += count
    return total


def count_torch(path: Path) -> int:
    """Floating-point tensors in a torch checkpoint, mapped lazily (nothing is read into memory)."""
    import torch

    state = torch.load(str(path), map_location="meta", weights_only=True, mmap=True)
    total = 0

    def walk(obj) -> None:
        nonlocal total
        if isinstance(obj, torch.Tensor):
            total += obj.numel() if obj.is_floating_point() else 0
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)

    walk(state)
    return total


def count_files(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        total += count_safetensors(p) if p.suffix == ".safetensors" else count_torch(p)
    return total


def param_count(name_or_path: str, files: list[Path]) -> tuple[int, str]:
    """(parameters, source): from the files when they are there, else from the manifest."""
    present = [f for f in files if f.is_file()]
    if present and len(present) == len(files):
        return count_files(present), "files"
    from talkgen.weights import manifest

    model = manifest().get(name_or_path)
    if model is not None and model.params:
        return int(model.params), "manifest"
    return 0, "unknown"


def weights_need(engine: str, model: str, device: str, params: int, dtype: str, source: str) -> Need:
    """The need of `params` weights in `dtype`, with room for activations."""
    gib = params * BYTES.get(dtype, 4) * (1 + ACTIVATIONS) / GIB
    return Need(engine, model, device, round(gib, 3), params, dtype, source)
