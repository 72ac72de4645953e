"""The GPU memory planner: will the recipe's placement fit, before anything is loaded?

Each back end states what it needs on each GPU it is placed on (its BACKEND.memory: see
engines/registry.py and engines/footprint.py). Engines that share a GPU take turns (each is
released when its stage ends) unless the recipe keeps them resident, so a GPU's peak is its
resident engines plus the largest of the others, plus a reserve for the CUDA context; it
must fit the GPU's memory as nvidia-smi reports it (talkgen.gpus).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from talkgen.errors import TalkgenError

if TYPE_CHECKING:
    from talkgen.engines.footprint import Need
    from talkgen.gpus import Gpu
    from talkgen.recipe import Recipe


@dataclass
class GpuPlan:
    gpu: "Gpu"
    needs: list[Need] = field(default_factory=list)
    peak_gib: float = 0.0
    resident: set = field(default_factory=set)
    reserve_gib: float = 0.0

    @property
    def fits(self) -> bool:
        return self.peak_gib <= self.gpu.memory_gib


def needs(recipe: Recipe, engines: set[str]) -> list[Need]:
    """What each GPU-placed engine of `engines` (stt, llm, tts, avatar) needs, as its back end says."""
    from talkgen.engines.registry import KINDS, chosen

    found = []
    for kind in (k for k in KINDS if k in engines):
        backend, config = chosen(recipe, kind)
        need = backend.memory(config, getattr(recipe.placement, kind)) if backend.memory else None
        if need is not None:
            found.append(need)
    return found


def plan(recipe: Recipe, engines: set[str], gpus: list[Gpu]) -> list[GpuPlan]:
    """Place every need on its GPUs and compute each GPU's peak; raise, with the numbers, if any does not fit.

    `gpus` are numbered as CUDA numbers them (talkgen.gpus.visible), as placement's cuda:N is.
    """
    from talkgen.placement import gpu_indices

    wanted = needs(recipe, engines)
    if not wanted:
        return []
    by_index = {g.index: GpuPlan(g) for g in gpus}
    missing: dict[str, list[int]] = {}
    for need in wanted:
        indices = gpu_indices(need.device)
        if indices is None:  # plain "cuda": the first GPU, or the first nproc for the avatar's ranks
            count = recipe.render.nproc if need.engine == "avatar" else 1
            indices = sorted(by_index)[:count] or list(range(count))
        for i in indices:
            if i in by_index:
                by_index[i].needs.append(need)
            else:
                missing.setdefault(need.engine, []).append(i)
    if missing:
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
        if hidden is None:
            seen = f"{len(gpus)} GPU(s) visible" if gpus else "no GPU visible (nvidia-smi found none)"
        else:  # cuda:N counts within the variable's list, as in any torch program
            seen = f"CUDA_VISIBLE_DEVICES='{hidden}' leaves {len(gpus)} GPU(s) visible, numbered from 0"
        lacks = ", ".join(f"{e} on GPU{'s' if len(ix) > 1 else ''} {','.join(map(str, ix))}" for e, ix in missing.items())
        raise TalkgenError(f"placement of recipe '{recipe.name}' needs GPUs this machine lacks: {lacks}; {seen}")
    resident = set(recipe.placement.resident)
    for p in by_index.values():
        if not p.needs:
            continue
        p.resident, p.reserve_gib = resident, recipe.placement.reserve_gb
        kept = sum(n.gib for n in p.needs if n.engine in resident)
        turns = max((n.gib for n in p.needs if n.engine not in resident), default=0.0)
        p.peak_gib = round(kept + turns + p.reserve_gib, 2)
    used = [p for p in by_index.values() if p.needs]
    short = [p for p in used if not p.fits]
    if short:
        raise TalkgenError("placement does not fit: " + "; ".join(describe(p) for p in short)
                           + ": move engines to other GPUs (placement.*), or drop them from placement.resident")
    return used


def describe(p: GpuPlan) -> str:
    def one(n: Need) -> str:
        return f"{n.engine} {n.model} {n.gib:.1f}"

    kept = [one(n) for n in p.needs if n.engine in p.resident]
    turns = [one(n) for n in p.needs if n.engine not in p.resident]
    if len(turns) > 1:
        kept.append(f"the largest of {', '.join(turns)} (in turn)")
    else:
        kept += turns
    parts = " + ".join([*kept, f"reserve {p.reserve_gib:g}"])
    return f"{p.gpu.label} needs {p.peak_gib:.1f} GiB at its peak ({parts}) of its {p.gpu.memory_gib:.1f} GiB"


def check_placement(recipe: Recipe, engines: set[str]) -> list[GpuPlan]:
    """Plan the GPU-placed engines against the GPUs nvidia-smi sees; nothing on a GPU, nothing to do."""
    if not needs(recipe, engines):
        return []
    from talkgen.gpus import read_gpus, visible

    return plan(recipe, engines, visible(read_gpus().gpus))
