"""The avatar protocol: what the chunked renderer needs to know about a back end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from talkgen.engines.registry import backend, checked
from talkgen.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from talkgen.portrait import Portrait
    from talkgen.recipe import Recipe, RenderConfig
    from talkgen.speech import SpeechTrack


class AvatarEngine(Protocol):
    fps: int
    max_chunk_s: float  # the longest chunk it can render (e.g. its KV-cache limit)
    frames_per_clip: int  # chunk lengths (plus lead_frames) are whole numbers of this
    # Frames each render_chunk call makes from the audio just before its chunk and throws
    # away (LiveAvatar drops the first 3 it decodes): the plan sizes chunks so that
    # length + lead_frames is whole clips, and the engine reads its audio from that far back.
    lead_frames: int
    world_size: int  # processes it needs
    output_rank: int  # the rank that produces frames
    width: int
    height: int

    def identity(self) -> dict:
        """Engine name, version, portrait hash and settings: part of the render cache key."""
        ...

    def render_chunk(
        self, track: "SpeechTrack", start_frame: int, end_frame: int, continuity: Any
    ) -> Iterator["np.ndarray"]:
        """Yield RGB uint8 frames (height, width, 3) for [start_frame, end_frame)."""
        ...

    def use_portrait(self, portrait: "Portrait") -> None:
        """Render the next chunks of `portrait`, without loading the model again: a job's portrait
        is its input, not the engine's identity (a warm rank group hands each job its own)."""
        ...

    def continuity_after(self, end_frame: int) -> Any:
        """State handed to the next chunk so its first frame continues this one's last.

        Must be JSON-serialisable: it is stored beside each chunk so a resumed render
        starts the next chunk exactly as an uninterrupted one would. State too large for
        that goes in a file named by its absolute path under the key "state_file"; the
        chunk store deletes it once it can no longer be needed (talkgen/chunks.py).
        """
        ...


@dataclass
class AvatarTraits:
    """What planning and cache keys need of a back end, known without loading it."""

    max_chunk_s: float  # the longest chunk it can render (e.g. its KV-cache limit)
    frames_per_clip: int
    world_size: int  # processes it runs as
    identity: dict  # part of the render cache key
    lead_frames: int = 0  # see AvatarEngine.lead_frames
    # What `talkgen check` may expect of its videos: {"lip_sync": False} for a back end that
    # does not claim lip sync, or its own calibrated bounds as "lip_sync_min_peak" and
    # "lip_sync_max_lag_ms"; {"lip_sync": True} claims it within the bounds calibrated on the
    # puppet (check.py).
    check: dict = field(default_factory=lambda: {"lip_sync": True})
    # How far past a chunk's end it reads the speech (audio and phonemes), in seconds: a chunk can
    # start while the rest is still being spoken. None: only once the speech is whole.
    lookahead_s: float | None = None


@dataclass(frozen=True)
class AvatarParts:
    """What an avatar back end declares besides what every back end does (engines/registry.py)."""

    traits: Callable[[RenderConfig], AvatarTraits]
    preflight: Callable[[RenderConfig], None] | None  # its checks of files, GPUs and world size, before any rank starts
    # The render sections the ranks get with their paths resolved (see rank_recipe)
    rank_settings: Callable[[RenderConfig], dict] | None
    ranks: bool  # it can run in launched ranks, under render.python; False: only in talkgen's own process


def traits_for(config: RenderConfig) -> AvatarTraits:
    """The back end's traits, once its checks and render.nproc against its world size have passed."""
    traits = checked("avatar", config).avatar.traits(config)
    if config.nproc != traits.world_size:
        raise UsageError(f"render.engine={config.engine} runs as {traits.world_size} process(es): set render.nproc={traits.world_size}")
    return traits


def check_avatar(config: RenderConfig) -> None:
    """The back end's own checks of files, GPUs and world size, run before any rank starts."""
    preflight = checked("avatar", config).avatar.preflight
    if preflight is not None:
        preflight(config)


def rank_recipe(recipe: Recipe) -> dict:
    """The recipe as the avatar ranks get it (Recipe.to_dict()), with every path a back end
    would look up in talkgen's own files (the weights manifest) already resolved: the ranks
    may run in another Python, which has the rank code but not the rest of talkgen."""
    data = recipe.to_dict()
    resolve = backend("avatar", recipe.render.engine).avatar.rank_settings
    for section, values in (resolve(recipe.render) if resolve else {}).items():
        data["render"][section].update(values)
    return data


def load_avatar(config: RenderConfig, portrait: Portrait, rank: int = 0, world_size: int = 1, device: str = "cpu",
                state_dir: Path | None = None) -> AvatarEngine:
    """The back end for one rank (rank 0 of 1 when it runs in talkgen's own process).

    state_dir is where a back end may keep continuity state too large for the chunk sidecar.
    """
    return checked("avatar", config).load(config, portrait, rank=rank, world_size=world_size, device=device, state_dir=state_dir)
