"""The GPU memory planner: will the recipe's placement fit, before anything is loaded?

Each engine on a GPU needs about params x bytes-per-param x (1 + ACTIVATIONS), counted as
engines/footprint.py says. Engines that share a GPU take turns (each is released when its
stage ends) unless the recipe keeps them resident, so a GPU's peak is its resident engines
plus the largest of the others, plus a reserve for the CUDA context; it must fit the GPU's
memory as nvidia-smi reports it (talkgen.gpus).
LiveAvatar states its own per-GPU need (see engines/liveavatar.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from talkgen.engines.footprint import ACTIVATIONS, GIB, Need, count_files, param_count, weights_need
from talkgen.errors import TalkgenError

if TYPE_CHECKING:
    from talkgen.gpus import Gpu


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


def _stt_need(recipe) -> Need | None:
    c = recipe.stt
    if c.engine != "openai-whisper" or c.device == "cpu":
        return None
    from talkgen.engines.openai_whisper_stt import OFFICIAL

    if c.model in OFFICIAL:
        from talkgen.weights import local_dir

        name = f"whisper-{c.model}"
        params, source = param_count(name, [local_dir(name) / f"{c.model}.pt"])
    else:
        name, (params, source) = c.model, (count_files([Path(c.model)]), "files")
    return weights_need("stt", name, c.device, params, "float16", source)


def _llm_need(recipe) -> Need | None:
    c = recipe.llm
    if c.device == "cpu":
        return None
    from talkgen.engines.transformers_llm import compute_dtype

    path = Path(c.model)
    if (path / "config.json").is_file():
        name, (params, source) = c.model, (count_files(sorted(path.glob("*.safetensors"))), "files")
    else:
        from talkgen.weights import manifest, weights_root

        model = next((m for m in manifest().values() if c.model in (m.repo, m.name)), None)
        name = model.name if model else c.model
        folder = weights_root() / (model.dir or model.name) if model else path
        files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        params, source = param_count(name, files) if files else param_count(name, [folder / "model.safetensors"])
    return weights_need("llm", name, c.device, params, compute_dtype(c), source)


def _tts_need(recipe) -> Need | None:
    c = recipe.tts
    if c.engine != "f5-tts" or c.device == "cpu":
        return None
    from talkgen.weights import local_dir, manifest

    models = manifest()
    if c.model in models:
        ckpt = [local_dir(c.model) / f["name"] for f in models[c.model].files if f["name"].endswith((".safetensors", ".pt"))]
        params, source = param_count(c.model, ckpt)
    else:
        params, source = count_files([Path(c.model)]), "files"
    vocoder = local_dir(c.vocoder) if c.vocoder in models else Path(c.vocoder)
    v_params, v_source = param_count(c.vocoder, [vocoder / "pytorch_model.bin"])
    # The DiT runs in bfloat16 on a GPU; the vocoder stays in float32.
    gib = (params * 2 + v_params * 4) * (1 + ACTIVATIONS) / GIB
    src = source if source == v_source else f"{source}+{v_source}"
    return Need("tts", c.model, c.device, round(gib, 3), params + v_params, "bfloat16", src)


def _avatar_need(recipe) -> Need | None:
    c = recipe.render
    if c.device == "cpu":
        return None
    if c.engine == "liveavatar":
        from talkgen.engines.liveavatar import gpu_need_gib

        return Need("avatar", "liveavatar", recipe.placement.avatar, float(gpu_need_gib(c)), source="LiveAvatar's figure")
    if c.engine == "tp-test":
        from talkgen.engines.tp_test import parameter_count

        return weights_need("avatar", "tp-test", recipe.placement.avatar, parameter_count(), c.dtype, "shape")
    return None


def needs(recipe, engines: set[str]) -> list[Need]:
    """What each GPU-placed engine of `engines` (stt, llm, tts, avatar) needs."""
    makers = {"stt": _stt_need, "llm": _llm_need, "tts": _tts_need, "avatar": _avatar_need}
    return [n for e in ("stt", "llm", "tts", "avatar") if e in engines for n in [makers[e](recipe)] if n is not None]


def plan(recipe, engines: set[str], gpus: list[Gpu]) -> list[GpuPlan]:
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


def check_placement(recipe, engines: set[str]) -> list[GpuPlan]:
    """Plan the GPU-placed engines against the GPUs nvidia-smi sees; nothing on a GPU, nothing to do."""
    if not needs(recipe, engines):
        return []
    from talkgen.gpus import read_gpus, visible

    return plan(recipe, engines, visible(read_gpus().gpus))
