"""What the avatar ranks' Python can do, asked of it before any rank starts.

Runs on the far side: `python -c BOOT` (talkgen.ranks.interpreter) checks the Python version
first, in code any Python can run, then runs this module with one JSON argument naming the
back end and the placement. It prints one JSON object on stdout and always exits 0: the
talkgen side turns what it finds into the user's one line. Only the standard library at
module level; torch and the back end are imported inside the checks, each failure caught
and reduced to one line.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys

# The talkgen modules every rank imports, whatever the back end (the rank loop, the chunk
# store and writer, media, the speech track, recipes). A back end adds its own module.
RANK_MODULES = ("talkgen.ranks.agent", "talkgen.ranks.worker", "talkgen.chunk_writer", "talkgen.speech", "talkgen.recipe",
                "talkgen.portrait", "talkgen.engines.avatar")


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _version(module: str) -> dict:
    try:
        mod = importlib.import_module(module)
    except BaseException as exc:  # noqa: BLE001 - a broken install raises anything
        return {"ok": False, "error": _line(exc)}
    return {"ok": True, "version": getattr(mod, "__version__", "")}


def _cuda(torch) -> dict:
    """CUDA as this torch sees it under the ranks' CUDA_VISIBLE_DEVICES."""
    out = {"build": getattr(torch.version, "cuda", None) or "", "available": False, "devices": []}
    try:
        out["available"] = bool(torch.cuda.is_available())
        for i in range(torch.cuda.device_count() if out["available"] else 0):
            major, minor = torch.cuda.get_device_capability(i)
            props = torch.cuda.get_device_properties(i)
            out["devices"].append({"name": props.name, "capability": [major, minor],
                                   "memory_gib": round(props.total_memory / 2**30, 1)})
        if out["available"]:
            out["bf16"] = bool(torch.cuda.is_bf16_supported())
    except BaseException as exc:  # noqa: BLE001 - a driver error is a finding, not a crash
        out["error"] = _line(exc)
    return out


def _distributed(torch) -> dict:
    try:
        import torch.distributed as dist

        return {"available": dist.is_available(), "nccl": dist.is_available() and dist.is_nccl_available(),
                "gloo": dist.is_available() and dist.is_gloo_available()}
    except BaseException as exc:  # noqa: BLE001
        return {"available": False, "error": _line(exc)}


def _imports(modules: list[str]) -> dict:
    """The first module of `modules` that does not import, and why; {} when all do."""
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - a module failing at import can raise anything
            return {"module": name, "error": _line(exc)}
    return {}


def _liveavatar(spec: dict) -> dict:
    """LiveAvatar from the user's checkout: its pipeline imports, and flash attention is there."""
    out: dict = {"checkout": spec.get("checkout", "")}
    if spec.get("checkout"):
        sys.path.insert(0, spec["checkout"])
    suffix = "_tpp" if spec.get("nproc", 1) > 1 else ""
    out["import"] = _imports([f"liveavatar.models.wan.causal_s2v_pipeline{suffix}", "yaml"])
    # Their flash_attention() asserts flash-attn 2 where flash-attn 3 is missing, and every DiT
    # and motion-encoder block calls it: without either the first forward fails.
    out["flash_attn"] = [name for name, module in (("flash_attn_3", "flash_attn_interface"), ("flash_attn", "flash_attn"))
                         if importlib.util.find_spec(module) is not None]
    return out


def probe(spec: dict) -> dict:
    v = sys.version_info
    out: dict = {"python": f"{v.major}.{v.minor}.{v.micro}", "executable": sys.executable, "prefix": sys.prefix}
    out["numpy"] = _version("numpy")
    out["torch"] = _version("torch")
    if out["torch"]["ok"]:
        import torch

        out["cuda"] = _cuda(torch)
        out["distributed"] = _distributed(torch)
        out["fp8_matmul"] = hasattr(torch, "_scaled_mm")
    from talkgen.engines.registry import module_of

    engine = spec.get("engine", "")
    module = module_of("avatar", engine)
    out["talkgen"] = _imports([*RANK_MODULES, *([module] if module else [])]) if out["numpy"]["ok"] else {}
    if engine == "liveavatar":
        out["liveavatar"] = _liveavatar(spec)
    return out


def main() -> None:
    spec = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    print(json.dumps(probe(spec)))


if __name__ == "__main__":
    main()
