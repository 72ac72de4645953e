"""The bundled GGUF's own quantised blocks, kept as they are and decoded by torch's int4 CPU kernel.

SmolLM2's GGUF stores its linear layers as Q4_1 (blocks of 32 four-bit values with a scale
and a minimum) and its tied embedding as Q8_0 (blocks of 32 bytes with a scale). Dequantised
to bfloat16, every generated token reads 270 MB of weights; kept in blocks it reads about
100 MB, and a token takes 28 ms instead of 69 on one core here. Both block kinds map exactly
onto torch's int4 weight format, w = (q - 8) * scale + zero in groups of 32:

- Q4_1, w = q * d + m:          scale d, zero m + 8d;
- Q8_0, w = q * d, q in -128..127: q = 16 * hi + lo with hi + 8 and lo in 0..15, so w is two
  int4 products, scale 16d with zero 0, and scale d with zero 8d.

The kernel pays off for a few rows at a time (one row a generated token); for a prompt's
blocks of 128 tokens the dense weights are faster, so each layer keeps both and picks by
the number of rows: a pure function of the prompt, so a reply stays the same whether or not a
chat's cache was kept. Rows never mix in the int4 kernel: a row's result does not depend on
the rows beside it or on the number of threads (tested).

"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

FILE = "blocks.safetensors"
GROUP = 32
# Above this many rows a layer computes with its dense weights (measured crossover: 4 to 8).
DECODE_ROWS = 4

_LINEARS = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def kernel_available() -> bool:
    import torch

    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and hasattr(torch.ops.aten, "_convert_weight_to_int4pack_for_cpu")


def _unpermute(rows: int, heads: int) -> np.ndarray:
    """The row order transformers gives attn_q and attn_k when it reads a llama GGUF: llama.cpp
    interleaves each head's rotary halves, and transformers puts them back."""
    return np.arange(rows).reshape(heads, rows // heads // 2, 2).swapaxes(2, 1).reshape(rows)


def _half(raw: np.ndarray, start: int) -> np.ndarray:
    return raw[..., start:start + 2].copy().view(np.float16)[..., 0]


def read_gguf(gguf: Path, heads: int, kv_heads: int) -> dict[str, np.ndarray]:
    """The GGUF's Q4_1 linear layers and its Q8_0 embedding as arrays under transformers' names:
    `<layer>.q` (uint8, two values a byte, value 2i low), `<layer>.d` and `<layer>.m` (float16,
    one a group), and `lm_head.q8` (int8), `lm_head.d`. Anything else is left dense."""
    from gguf import GGUFReader

    out: dict[str, np.ndarray] = {}
    for tensor in GGUFReader(str(gguf)).tensors:
        kind = tensor.tensor_type.name
        if kind == "Q4_1" and tensor.name.startswith("blk.") and tensor.name.split(".")[2] in _LINEARS:
            _, layer, part, _ = tensor.name.split(".")
            raw = np.asarray(tensor.data).reshape(tensor.data.shape[0], -1, 4 + GROUP // 2)  # d, m, 16 bytes of nibbles
            nibbles = raw[..., 4:]
            q = np.concatenate([nibbles & 15, nibbles >> 4], axis=-1).reshape(raw.shape[0], -1)  # ggml: low nibbles first
            d, m = _half(raw, 0), _half(raw, 2)
            if part in ("attn_q", "attn_k"):
                order = _unpermute(q.shape[0], heads if part == "attn_q" else kv_heads)
                q, d, m = q[order], d[order], m[order]
            name = f"model.layers.{layer}.{_LINEARS[part]}"
            out[f"{name}.q"] = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)
            out[f"{name}.d"], out[f"{name}.m"] = d, m
        elif kind == "Q8_0" and tensor.name == "token_embd.weight":
            raw = np.asarray(tensor.data).reshape(tensor.data.shape[0], -1, 2 + GROUP)
            out["lm_head.q8"] = raw[..., 2:].copy().view(np.int8).reshape(raw.shape[0], -1)
            out["lm_head.d"] = _half(raw, 0)
    return out


def save(blocks: dict[str, np.ndarray], path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in blocks.items()}, str(path), metadata={"group": str(GROUP)})


def _int4_part(values: "torch.Tensor", scale: "torch.Tensor", zero: "torch.Tensor", dtype: "torch.dtype") -> tuple:
    """Values 0..15 with a scale and zero a group, as the kernel takes them: w = (q - 8) * scale + zero."""
    import torch

    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(values.to(torch.int32), 1)
    return packed, torch.stack([scale.t(), zero.t()], dim=-1).to(dtype).contiguous()  # [K / group, N, 2]


@functools.cache
def _block_layer() -> type:
    import torch

    class BlockLayer(torch.nn.Module):
        """A bias-free projection with its dense weight, and its blocks as int4 products that add up to it."""

        def __init__(self, weight: torch.Tensor, parts: list[tuple]):
            super().__init__()
            self.weight = weight  # the model's own parameter (the head's is the embedding's): no second copy
            self.parts = parts

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rows = x.numel() // x.shape[-1]
            if rows > DECODE_ROWS:
                return torch.nn.functional.linear(x, self.weight)
            x2 = x.reshape(rows, x.shape[-1])
            y = None
            for packed, scales_zeros in self.parts:
                part = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, packed, GROUP, scales_zeros)
                y = part if y is None else y + part
            return y.reshape(*x.shape[:-1], y.shape[-1])

    return BlockLayer


def install(model: "torch.nn.Module", path: Path) -> int:
    """Swap the model's linear layers (and tied head) for block layers from `path`; how many were swapped."""
    layer = _block_layer()
    parts = _packed(model, path)
    for name, layer_parts in parts.items():
        if name == "lm_head":
            model.set_output_embeddings(layer(model.get_output_embeddings().weight, layer_parts))
        else:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, layer(model.get_submodule(name).weight, layer_parts))
    return len(parts)


def _packed(model: "torch.nn.Module", path: Path) -> dict[str, list[tuple]]:
    """Each layer's int4 parts, as the kernel takes them. Packing them is 0.46 s of every LLM load
    here (SmolLM2), so they are kept beside the blocks, for this torch, CPU and compute dtype (the
    packed layout is the kernel's own), and read back in a fraction of that."""
    import torch

    from talkgen.job import code_hash

    dtype, stat = model.get_output_embeddings().weight.dtype, path.stat()
    made_for = f"{torch.__version__}|{torch.backends.cpu.get_cpu_capability()}|{dtype}|{stat.st_size}|{stat.st_mtime_ns}|{code_hash(__name__)}"
    kept = path.with_name(f"{path.stem}.int4-{hashlib.sha256(made_for.encode()).hexdigest()[:16]}.safetensors")
    parts = _read_packed(kept, model)
    if parts is None:
        parts = _pack(model, path)
        _keep_packed(parts, kept, path)
    return parts


def _pack(model: "torch.nn.Module", path: Path) -> dict[str, list[tuple]]:
    import torch
    from safetensors.torch import load_file

    blocks = load_file(str(path))
    parts: dict[str, list[tuple]] = {}
    for key in [k for k in blocks if k.endswith(".q") and k.startswith("model.layers.")]:
        name = key[:-2]
        old = model.get_submodule(name)
        if old.bias is not None or old.weight.shape[1] != blocks[key].shape[1] * 2:
            raise ValueError(f"{name} in {path} does not match the model's layer")
        packed, d, m = blocks[key], blocks[f"{name}.d"].float(), blocks[f"{name}.m"].float()
        values = torch.stack([packed & 15, packed >> 4], dim=-1).reshape(packed.shape[0], -1)  # the uint8 pairs apart
        parts[name] = [_int4_part(values, d, m + 8 * d, old.weight.dtype)]
    if "lm_head.q8" in blocks:
        head = model.get_output_embeddings()
        q8, d = blocks["lm_head.q8"], blocks["lm_head.d"].float()
        if head.bias is not None or head.weight.shape != q8.shape:
            raise ValueError(f"the output projection in {path} does not match the model's")
        # Shifted in int8 (an arithmetic shift: -1 is 16 * -1 + 15).
        parts["lm_head"] = [_int4_part((q8 >> 4) + 8, 16 * d, torch.zeros_like(d), head.weight.dtype),
                            _int4_part(q8 & 15, d, 8 * d, head.weight.dtype)]
    return parts


def _read_packed(kept: Path, model: "torch.nn.Module") -> dict[str, list[tuple]] | None:
    """The kept parts, if they are there, whole, and fit the model's layers (else None: packed again)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(kept))
    except (OSError, SafetensorError):
        return None
    parts: dict[str, list[tuple]] = {}
    try:
        for key in sorted(tensors):
            name, index, kind = key.rsplit("/", 2)
            if kind == "packed":
                parts.setdefault(name, []).append((tensors[key], tensors[f"{name}/{index}/scales_zeros"]))
        for name, layer_parts in parts.items():
            weight = model.get_output_embeddings().weight if name == "lm_head" else model.get_submodule(name).weight
            rows, cols = weight.shape
            if any(sz.shape != (cols // GROUP, rows, 2) or sz.dtype != weight.dtype for _, sz in layer_parts):
                return None
    except (AttributeError, KeyError, ValueError):  # not a layer of this model, a part missing, a name not ours
        return None
    return parts or None


def _keep_packed(parts: dict[str, list[tuple]], kept: Path, blocks: Path) -> None:
    from safetensors.torch import save_file

    from talkgen.job import atomic_path

    tensors = {f"{name}/{i}/{kind}": t.contiguous() for name, layer_parts in parts.items()
               for i, pair in enumerate(layer_parts) for kind, t in zip(("packed", "scales_zeros"), pair)}
    try:
        with atomic_path(kept) as tmp:
            save_file(tensors, str(tmp))
        for old in blocks.parent.glob(f"{blocks.stem}.int4-*.safetensors"):
            if old != kept:
                old.unlink(missing_ok=True)  # made for another torch or CPU: one copy kept, not one a version
    except OSError:
        pass  # a cache that cannot be written: packed again next time
