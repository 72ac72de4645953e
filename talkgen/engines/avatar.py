"""The avatar protocol: what the chunked renderer needs to know about a back end."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Protocol

if TYPE_CHECKING:
    import numpy as np

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

    def continuity_after(self, end_frame: int) -> Any:
        """State handed to the next chunk so its first frame continues this one's last.

        Must be JSON-serialisable: it is stored beside each chunk so a resumed render
        starts the next chunk exactly as an uninterrupted one would. State too large for
        that goes in a file named by its absolute path under the key "state_file"; the
        chunk store deletes it once it can no longer be needed (talkgen/chunks.py).
        """
        ...


ENGINES = ("puppet", "tp-test", "liveavatar")


def _check(config) -> None:
    if config.engine not in ENGINES:
        from talkgen.errors import UsageError

        raise UsageError(f"unknown render.engine '{config.engine}': the available engines are {', '.join(ENGINES)}")


def avatar_traits(config) -> dict:
    """What planning and cache keys need, known without loading the engine:
    max_chunk_s, frames_per_clip, lead_frames, world_size and an identity dict; and
    "check", what `talkgen check` may expect of its videos: {"lip_sync": False} for a back
    end that does not claim lip sync, or its own calibrated bounds as "lip_sync_min_peak"
    and "lip_sync_max_lag_ms". A back end that says nothing claims lip sync within the
    bounds calibrated on the puppet (check.py)."""
    _check(config)
    if config.engine == "tp-test":
        from talkgen.engines import tp_test

        traits = tp_test.traits(config)
    elif config.engine == "liveavatar":
        from talkgen.engines import liveavatar

        traits = liveavatar.traits(config)
    else:
        from talkgen.engines import puppet

        traits = puppet.traits(config)
    traits.setdefault("lead_frames", 0)
    traits.setdefault("check", {"lip_sync": True})
    if config.nproc != traits["world_size"]:
        from talkgen.errors import UsageError

        raise UsageError(f"render.engine={config.engine} runs as {traits['world_size']} process(es): set render.nproc={traits['world_size']}")
    return traits


def check_avatar(config) -> None:
    """The back end's own checks of files, GPUs and world size, run before any rank starts."""
    if config.engine == "liveavatar":
        from talkgen.engines.liveavatar import check

        check(config)


def rank_recipe(recipe) -> dict:
    """The recipe as the avatar ranks get it (Recipe.to_dict()), with every path a back end
    would look up in talkgen's own files (the weights manifest) already resolved: the ranks
    may run in another Python, which has the rank code but not the rest of talkgen."""
    data = recipe.to_dict()
    if recipe.render.engine == "liveavatar":
        from talkgen.engines.liveavatar import resolved_paths

        data["render"]["liveavatar"].update(resolved_paths(recipe.render.liveavatar))
    return data


def load_avatar(config, portrait, rank: int = 0, world_size: int = 1, device: str = "cpu", state_dir=None) -> AvatarEngine:
    """The back end for one rank (rank 0 of 1 when it runs in talkgen's own process).

    state_dir is where a back end may keep continuity state too large for the chunk sidecar.
    """
    _check(config)
    if config.engine == "liveavatar":
        from talkgen.engines.liveavatar import LiveAvatarEngine

        return LiveAvatarEngine(config, portrait, rank=rank, world_size=world_size, device=device, state_dir=state_dir)
    if config.engine == "tp-test":
        from talkgen.engines.tp_test import TPTestAvatar

        return TPTestAvatar(config, portrait, rank=rank, world_size=world_size, device=device)
    from talkgen.engines.puppet import PuppetAvatar

    return PuppetAvatar(config, portrait)
