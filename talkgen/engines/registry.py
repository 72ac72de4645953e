"""The model back ends, one line each, and lookups by kind and name.

Each back end declares itself in its own module as BACKEND, a Backend: its kind, the names
recipes select it by, and what the rest of talkgen asks of it (its identity for cache keys,
its checks, its loader, its GPU memory for the planner, what `talkgen doctor` should look
at). The factories (load_stt, load_tts, load_llm, load_avatar and their identity helpers),
the memory planner and doctor read those declarations and know no back end by name.

A line below also names the back end's kind and names, so that a lookup imports that one
module and no other: the avatar ranks may run in a Python that has only the rank code, and
must not import the other back ends (tests/test_rank_python.py); tests/test_registry.py
checks that each line and its module's BACKEND agree. Nothing here imports a back end
before it is asked for, and back ends import heavy packages only inside their functions.

Adding a back end: its module, with its BACKEND, and its line in LISTED (a line per name).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from talkgen.errors import UsageError

if TYPE_CHECKING:
    from talkgen.engines.avatar import AvatarParts
    from talkgen.engines.footprint import Need
    from talkgen.recipe import Recipe

KINDS = ("stt", "llm", "tts", "avatar")
SECTIONS = {"stt": "stt", "llm": "llm", "tts": "tts", "avatar": "render"}  # the recipe section that configures each kind

LISTED = (  # kind, name, the module that declares it
    ("stt", "faster-whisper", "talkgen.engines.faster_whisper_stt"),
    ("stt", "openai-whisper", "talkgen.engines.openai_whisper_stt"),
    ("llm", "transformers", "talkgen.engines.transformers_llm"),
    ("tts", "piper", "talkgen.engines.piper_tts"),
    ("tts", "f5-tts", "talkgen.engines.f5_tts"),
    ("avatar", "puppet", "talkgen.engines.puppet"),
    ("avatar", "tp-test", "talkgen.engines.tp_test"),
    ("avatar", "liveavatar", "talkgen.engines.liveavatar"),
)


@dataclass(frozen=True)
class Finding:
    """A line a back end adds to `talkgen doctor`."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Settings:
    """Which settings of its recipe section matter to a back end, declared once. The rest are
    read at each call (handed to the engine it has) or say how and where to run (GPUs, launcher,
    timeouts), so changing one neither reloads the model nor discards what it made."""

    output: tuple[str, ...]  # change what it makes: they go into the cache key of the stage that runs it
    reload: tuple[str, ...]  # read when it loads: a change loads it again (the engine holder, the rank worker)


@dataclass(frozen=True)
class Backend:
    """A back end's declaration. `config` is its recipe section (STTConfig, LLMConfig,
    TTSConfig or RenderConfig); a field that is None means the back end has none of it."""

    kind: str  # stt, llm, tts or avatar
    names: tuple[str, ...]  # the values of its section's `engine` that select it
    identity: Callable[[Any], dict]  # config -> what its cache keys need to know, without loading the model
    check: Callable[[Any], None] | None  # config -> raises UsageError for settings it cannot run with
    load: Callable[..., Any]  # the kind's loader: the arguments of load_stt, load_tts, load_llm or load_avatar
    # (config, placement string) -> what it needs on each GPU it is placed on, None on the CPU;
    # a None rule: it never holds GPU memory of its own
    memory: Callable[[Any, str], Need | None] | None
    # config -> the number formats ("bf16", "fp8") the GPUs must support, each with what asks
    # for it (for fp8, the setting that turns it off)
    formats: Callable[[Any], list[tuple[str, str]]] | None
    doctor: Callable[[Any], list[Finding]] | None  # config -> its own lines in `talkgen doctor`
    avatar: AvatarParts | None  # what only an avatar back end declares (engines/avatar.py)
    settings: Settings  # which of its section's settings change its output, which reload it


def names(kind: str) -> tuple[str, ...]:
    return tuple(name for k, name, _ in LISTED if k == kind)


def module_of(kind: str, name: str) -> str | None:
    """The module that declares the back end of `kind` that recipes call `name` (None: there is none)."""
    return next((module for k, n, module in LISTED if (k, n) == (kind, name)), None)


def backend(kind: str, name: str) -> Backend:
    """The declaration of the back end of `kind` that recipes call `name`; its module is imported now."""
    module = module_of(kind, name)
    if module is not None:
        return importlib.import_module(module).BACKEND
    raise UsageError(f"unknown {SECTIONS[kind]}.engine '{name}': the available engines are {', '.join(names(kind))}")


def checked(kind: str, config: Any) -> Backend:
    """The back end `config` selects, once its own checks of `config` have passed."""
    found = backend(kind, config.engine)
    if found.check is not None:
        found.check(config)
    return found


def chosen(recipe: Recipe, kind: str) -> tuple[Backend, Any]:
    """The back end the recipe selects for `kind`, and its section of the recipe."""
    config = getattr(recipe, SECTIONS[kind])
    return backend(kind, config.engine), config


def all_backends() -> list[Backend]:
    """Every listed back end's declaration (each module imported)."""
    return [backend(kind, name) for kind, name, _ in LISTED]


def pick(config: Any, names: tuple[str, ...]) -> dict:
    """The named settings of a recipe section, "sub.key" reaching into a subsection."""
    out = {}
    for name in names:
        value = config
        for part in name.split("."):
            value = getattr(value, part)
        out[name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


def output_settings(kind: str, config: Any) -> dict:
    """The settings that change what the selected back end makes: part of its stage's cache key."""
    return pick(config, checked(kind, config).settings.output)


def reload_settings(kind: str, config: Any) -> dict:
    """The settings the selected back end reads when it loads: an engine loaded with others is loaded again."""
    return pick(config, backend(kind, config.engine).settings.reload)
