"""tp-test: a small random-weight torch avatar with real tensor parallelism, for testing the ranks.

Per frame it reads 16 audio band energies and a recurrent motion state, runs a two-layer
MLP whose first layer is column-parallel (each rank holds a slice of the hidden units)
and whose second is row-parallel (each rank holds the matching slice of the inputs, and
an all-reduce sums the partial outputs), and adds the result, upsampled, to the portrait.
Weights come from the seed in full on every rank and are then sliced, so any world size
computes the same function. The motion state runs across frames and chunks: it is the
continuity a chunk hands to the next.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any, Iterator

from talkgen.engines.avatar import AvatarParts, AvatarTraits
from talkgen.engines.registry import Backend, Settings

if TYPE_CHECKING:
    import numpy as np

    from pathlib import Path

    from talkgen.engines.footprint import Need
    from talkgen.portrait import Portrait
    from talkgen.recipe import RenderConfig
    from talkgen.speech import SpeechTrack

BANDS = 16
STATE = 8
HIDDEN = 64
LOW = 16  # the MLP draws a LOW x LOW x 3 image, upsampled to the output size


def check(config: RenderConfig) -> None:
    if config.nproc < 1 or HIDDEN % config.nproc:
        from talkgen.errors import UsageError

        raise UsageError(f"tp-test splits {HIDDEN} hidden units across ranks: render.nproc must divide {HIDDEN}")


def identity(config: RenderConfig) -> dict:
    return {"engine": "tp-test", "version": metadata.version("talkgen"), "code": _code_hash()}


def traits(config: RenderConfig) -> AvatarTraits:
    return AvatarTraits(
        max_chunk_s=4.0,  # stands in for a KV-cache limit: the plan must respect it
        frames_per_clip=4,
        world_size=config.nproc,
        identity=identity(config),
        check={"lip_sync": False},  # random weights: its mouth follows the audio bands by chance only
    )


def memory_need(config: RenderConfig, device: str) -> Need | None:
    """The whole model's weights in render.dtype on each of its GPUs (more than a rank's slice)."""
    if device == "cpu":
        return None
    from talkgen.engines.footprint import weights_need

    return weights_need("avatar", "tp-test", device, parameter_count(), config.dtype, "shape")


def formats(config: RenderConfig) -> list[tuple[str, str]]:
    return [("bf16", "render.dtype=bfloat16")] if config.device == "cuda" and config.dtype == "bfloat16" else []


def load(config: RenderConfig, portrait: Portrait, rank: int = 0, world_size: int = 1, device: str = "cpu",
         state_dir: Path | None = None) -> TPTestAvatar:
    return TPTestAvatar(config, portrait, rank=rank, world_size=world_size, device=device)  # its state fits the sidecar


BACKEND = Backend(kind="avatar", names=("tp-test",), identity=identity, check=check, load=load, memory=memory_need,
                  formats=formats, doctor=None,
                  avatar=AvatarParts(traits=traits, preflight=None, rank_settings=None, ranks=True),
                  settings=Settings(output=("size", "fps", "seed", "dtype", "device", "nproc"), reload=("size", "fps", "seed", "dtype", "device", "nproc")))


def parameter_count() -> int:
    """The whole model's parameters (every rank holds 1/world_size of the hidden ones)."""
    out = LOW * LOW * 3 + STATE
    return (BANDS + STATE) * HIDDEN + HIDDEN + HIDDEN * out + out


class TPTestAvatar:
    output_rank = 0
    max_chunk_s = 4.0
    frames_per_clip = 4
    lead_frames = 0

    def __init__(self, config: RenderConfig, portrait: "Portrait", rank: int = 0, world_size: int = 1, device: str = "cpu"):
        import torch

        if HIDDEN % world_size:
            from talkgen.errors import UsageError

            raise UsageError(f"tp-test splits {HIDDEN} hidden units across ranks: render.nproc must divide {HIDDEN}")
        self.config = config
        self.fps, self.width, self.height = config.fps, config.size, config.size
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.dtype = getattr(torch, config.dtype)
        gen = torch.Generator().manual_seed(config.seed)
        w1 = torch.randn(BANDS + STATE, HIDDEN, generator=gen) / (BANDS + STATE) ** 0.5
        b1 = torch.randn(HIDDEN, generator=gen) * 0.1
        w2 = torch.randn(HIDDEN, LOW * LOW * 3 + STATE, generator=gen) / HIDDEN**0.5
        b2 = torch.randn(LOW * LOW * 3 + STATE, generator=gen) * 0.1
        part = slice(rank * HIDDEN // world_size, (rank + 1) * HIDDEN // world_size)
        to = {"device": self.device, "dtype": self.dtype}
        self.w1, self.b1 = w1[:, part].contiguous().to(**to), b1[part].contiguous().to(**to)  # column-parallel
        self.w2 = w2[part, :].contiguous().to(**to)  # row-parallel
        self.b2 = b2.to(**to)  # added once, after the reduction
        self._state: list[float] = [0.0] * STATE
        self.use_portrait(portrait)

    def use_portrait(self, portrait: "Portrait") -> None:
        import numpy as np

        self.portrait = portrait
        self.base = np.ascontiguousarray(portrait.image).astype(np.float32)

    def identity(self) -> dict:
        c = self.config
        return {**identity(c), "portrait": self.portrait.sha256, "size": c.size, "seed": c.seed, "dtype": c.dtype}

    def continuity_after(self, end_frame: int) -> Any:
        return {"state": self._state, "frame": end_frame}

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":  # noqa: F821 - torch is imported lazily
        """One frame's MLP: the full output on every rank."""
        import torch

        hidden = torch.nn.functional.gelu(x @ self.w1 + self.b1)
        partial = hidden @ self.w2
        if self.world_size > 1:
            from talkgen.ranks.collectives import all_reduce_sum

            all_reduce_sum(partial)
        return partial + self.b2

    def render_chunk(self, track: "SpeechTrack", start_frame: int, end_frame: int, continuity: Any = None) -> Iterator["np.ndarray"]:
        import numpy as np
        import torch

        state = torch.tensor((continuity or {}).get("state", [0.0] * STATE), device=self.device, dtype=torch.float32)
        bands = band_energies(track, self.fps, start_frame, end_frame)
        for i in range(end_frame - start_frame):
            x = torch.cat([torch.from_numpy(bands[i]).to(self.device), state]).to(self.dtype)
            out = self.forward(x).float()
            state = 0.8 * state + 0.2 * torch.tanh(out[-STATE:])
            low = torch.tanh(out[: LOW * LOW * 3]).reshape(1, LOW, LOW, 3).permute(0, 3, 1, 2)
            # In torch, not OpenCV: the ranks may run in a back end's own Python, without it.
            delta = torch.nn.functional.interpolate(low, size=(self.height, self.width), mode="bilinear", align_corners=False)
            yield np.clip(self.base + 40.0 * delta[0].permute(1, 2, 0).cpu().numpy(), 0, 255).astype(np.uint8)
        self._state = [float(v) for v in state.cpu()]


def band_energies(track: "SpeechTrack", fps: int, start: int, end: int) -> "np.ndarray":
    """Log energy in 16 frequency bands of each frame's audio."""
    import numpy as np

    sr = track.sample_rate
    audio = track.read(start * sr // fps, end * sr // fps + sr // fps)
    out = np.zeros((end - start, BANDS), np.float32)
    for i in range(end - start):
        a = audio[(start + i) * sr // fps - start * sr // fps : (start + i + 1) * sr // fps - start * sr // fps]
        spec = np.abs(np.fft.rfft(a, n=512))[1:257]
        out[i] = np.log1p(spec.reshape(BANDS, -1).sum(axis=1))
    return out


def _code_hash() -> str:
    from talkgen.job import code_hash

    return code_hash(__name__)
