"""F5-TTS (a flow-matching DiT plus the Vocos vocoder): speech in a voice cloned from a reference.

Built from the package's model classes, not its `infer` helpers: those import matplotlib,
pydub and a transformers ASR pipeline, fetch the vocoder and a Whisper model from the hub
when a path or a reference text is missing, and shell out to ffmpeg. Here every file comes
from the weights manifest or a path, the reference is decoded by talkgen's media module,
and a missing reference transcript is made by talkgen's own speech-to-text.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from talkgen.engines.registry import Backend, Settings
from talkgen.engines.tts import Speech
from talkgen.errors import TalkgenError, UsageError
from talkgen.text.script import has_words

if TYPE_CHECKING:
    import numpy as np

    from talkgen.engines.footprint import Need
    from talkgen.recipe import TTSConfig

SAMPLE_RATE = 24000
HOP = 256  # samples per mel frame: F5 and vocos-mel-24khz share it
N_MELS = 100
TARGET_RMS = 0.1  # F5 was trained on references at this loudness
REFERENCE_S = (2.0, 15.0)  # shorter clones badly; longer leaves little of F5's ~30 s window
EXAMPLE_VOICE_TEXT = "Some call me nature, others call me mother nature."


@dataclass
class Reference:
    audio: "np.ndarray"  # mono float32 at SAMPLE_RATE
    text: str
    path: Path


def example_voice() -> Path:
    """The English reference recording shipped inside the f5-tts package (used when tts.voice is blank)."""
    from importlib.resources import files

    return Path(str(files("f5_tts").joinpath("infer/examples/basic/basic_ref_en.wav")))


def voice_path(config: TTSConfig) -> Path:
    if not config.voice:
        return example_voice()
    path = Path(config.voice)
    if not path.is_file():
        raise UsageError(f"voice recording {path} does not exist: give --voice a WAV/MP3/FLAC of 2-15 s of clean speech")
    return path


def voice_text(config: TTSConfig) -> str:
    """The reference transcript when it is known without listening: given, or the example's."""
    if config.voice_text.strip():
        return config.voice_text.strip()
    return EXAMPLE_VOICE_TEXT if not config.voice else ""


def read_reference(config: TTSConfig) -> "np.ndarray":
    """The recording to clone, decoded at 24 kHz and checked: 2-15 s, not silent."""
    from talkgen import media

    path = voice_path(config)
    audio = media.decode_audio(path, SAMPLE_RATE)
    seconds = len(audio) / SAMPLE_RATE
    lo, hi = REFERENCE_S
    if not lo <= seconds <= hi:
        raise UsageError(
            f"the voice recording {path} is {seconds:.1f} s long: F5-TTS needs {lo:.0f}-{hi:.0f} s of one speaker "
            f"(cut one, e.g. ffmpeg -i {path.name} -t 10 voice.wav)"
        )
    if float((audio**2).mean()) ** 0.5 < 1e-3:
        raise UsageError(f"the voice recording {path} is silent: give --voice a recording of speech")
    return audio


def reference(config: TTSConfig, audio: "np.ndarray", text: str) -> Reference:
    path = voice_path(config)
    if not has_words(text):
        raise UsageError(f"the voice recording {path} has no transcript: pass --voice-text \"what it says\"")
    return Reference(audio=audio, text=text, path=path)


def load_reference(config: TTSConfig, text: str) -> Reference:
    return reference(config, read_reference(config), text)


def arch(config: TTSConfig) -> dict:
    """The DiT's shape: a config name shipped with f5-tts (F5TTS_v1_Base, ...) or a YAML path."""
    import yaml

    path = Path(config.arch)
    if not path.is_file():
        from importlib.resources import files

        path = Path(str(files("f5_tts").joinpath(f"configs/{config.arch}.yaml")))
        if not path.is_file():
            raise UsageError(f"tts.arch '{config.arch}' is neither an F5-TTS config name (e.g. F5TTS_v1_Base) nor a YAML file")
    model = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("model", {})
    if model.get("backbone", "DiT") != "DiT" or not isinstance(model.get("arch"), dict):
        raise UsageError(f"{path} does not describe an F5-TTS DiT (model.backbone DiT with model.arch)")
    spec = model.get("mel_spec", {})
    if spec and (spec.get("n_mel_channels", N_MELS), spec.get("hop_length", HOP), spec.get("target_sample_rate", SAMPLE_RATE)) != (N_MELS, HOP, SAMPLE_RATE):
        raise UsageError(f"{path}: talkgen's F5-TTS engine needs 100 mels, hop 256 at 24 kHz (the Vocos vocoder's)")
    return dict(model["arch"])


def files(config: TTSConfig, recipe: str) -> tuple[Path, Path, Path]:
    """(checkpoint, vocab.txt, vocoder folder), from the weights manifest or from paths."""
    from talkgen.weights import manifest, require, require_file

    models = manifest()
    if config.model in models:
        entry = models[config.model]
        ckpt_name = next((f["name"] for f in entry.files if f["name"].endswith((".safetensors", ".pt"))), "")
        vocab_name = next((f["name"] for f in entry.files if f["name"].endswith("vocab.txt")), "")
        ckpt = require_file(config.model, ckpt_name, recipe)
        vocab = require_file(config.model, vocab_name, recipe)
    else:
        ckpt = Path(config.model)
        if not ckpt.is_file() or ckpt.suffix not in (".safetensors", ".pt"):
            raise UsageError(f"tts.model '{config.model}' is neither a model in the weights manifest nor an F5-TTS checkpoint (.safetensors or .pt)")
        vocab = ckpt.with_name("vocab.txt")
        if not vocab.is_file():
            raise UsageError(f"{vocab} is missing: an F5-TTS checkpoint needs the vocab.txt it was trained with beside it")
    if config.vocoder in models:
        vocoder = require(config.vocoder, recipe)
    else:
        vocoder = Path(config.vocoder)
    if not ((vocoder / "config.yaml").is_file() and (vocoder / "pytorch_model.bin").is_file()):
        raise UsageError(f"tts.vocoder '{config.vocoder}' is not a Vocos folder (config.yaml and pytorch_model.bin)")
    return ckpt, vocab, vocoder


def identity(config: TTSConfig, reference_sha: str | None = None) -> dict:
    """reference_sha: the sha256 of the recording it clones; None: of tts.voice's (or the example's)."""
    if reference_sha is None:
        from talkgen.job import sha256_file

        reference_sha = sha256_file(voice_path(config))
    return {
        "engine": "f5-tts", "f5_tts": metadata.version("f5-tts"), "model": config.model, "arch": config.arch,
        "vocoder": config.vocoder, "voice": reference_sha, "voice_text": config.voice_text, "steps": config.steps,
        "cfg_strength": config.cfg_strength, "sway": config.sway, "speed": config.speed, "seed": config.seed,
        "device": config.device,
    }


def memory_need(config: TTSConfig, device: str) -> Need | None:
    """The DiT in bfloat16 and the vocoder in float32, counted from their files (or the manifest)."""
    if device == "cpu":
        return None
    from talkgen.engines.footprint import ACTIVATIONS, GIB, Need, count_files, param_count
    from talkgen.weights import local_dir, manifest

    models = manifest()
    if config.model in models:
        ckpt = [local_dir(config.model) / f["name"] for f in models[config.model].files if f["name"].endswith((".safetensors", ".pt"))]
        params, source = param_count(config.model, ckpt)
    else:
        params, source = count_files([Path(config.model)]), "files"
    vocoder = local_dir(config.vocoder) if config.vocoder in models else Path(config.vocoder)
    v_params, v_source = param_count(config.vocoder, [vocoder / "pytorch_model.bin"])
    gib = (params * 2 + v_params * 4) * (1 + ACTIVATIONS) / GIB
    src = source if source == v_source else f"{source}+{v_source}"
    return Need("tts", config.model, device, round(gib, 3), params + v_params, "bfloat16", src)


def formats(config: TTSConfig) -> list[tuple[str, str]]:
    return [] if config.device == "cpu" else [("bf16", "F5-TTS on a GPU (bfloat16)")]


def compute_dtype(device: str):
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def checkpoint_state(path: Path) -> dict:
    """The EMA weights of an F5-TTS checkpoint, named as the model's own parameters."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw = load_file(str(path))
    else:
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
        raw = raw.get("ema_model_state_dict", raw.get("model_state_dict", raw))
    # Training bookkeeping and the mel filter bank (rebuilt from the config) are not weights.
    skip = {"initted", "step", "mel_spec.mel_stft.mel_scale.fb", "mel_spec.mel_stft.spectrogram.window"}
    return {k.removeprefix("ema_model."): v for k, v in raw.items() if k.removeprefix("ema_model.") not in skip}


def model_classes() -> tuple[type, type]:
    """F5-TTS's CFM and DiT, imported without running f5_tts.model's __init__.

    That __init__ imports the trainer, and with it wandb, datasets, accelerate and ema_pytorch,
    none of which inference uses: seconds of imports at every load, and on the GPU machine,
    where those packages are not installed and too large to carry, an ImportError. The package
    is put in sys.modules unexecuted (its submodules import as usual), then given the two
    classes, so `from f5_tts.model import CFM, DiT` still works after this in the same process.
    """
    import importlib.util
    import sys

    if "f5_tts.model" not in sys.modules:
        spec = importlib.util.find_spec("f5_tts.model")
        if spec is None:
            raise ImportError("f5_tts.model")
        sys.modules["f5_tts.model"] = importlib.util.module_from_spec(spec)
    from f5_tts.model.backbones.dit import DiT
    from f5_tts.model.cfm import CFM

    package = sys.modules["f5_tts.model"]
    package.CFM, package.DiT = CFM, DiT
    return CFM, DiT


class F5TTS:
    sample_rate = SAMPLE_RATE

    def __init__(self, config: TTSConfig, reference: Reference, recipe: str = "cpu"):
        from talkgen.offline import go_offline

        go_offline()
        import torch

        try:
            CFM, DiT = model_classes()
        except ImportError:
            raise TalkgenError("F5-TTS is not installed: run ./install.sh (or pip install --build-constraint build-constraints.txt "
                               "'talkgen[production]')") from None
        from f5_tts.model.utils import get_tokenizer
        from vocos import Vocos

        from talkgen.engines.building import BUILDING

        self.config, self.reference = config, reference
        self.device = config.device
        ckpt, vocab, vocoder_dir = files(config, recipe)
        vocab_map, vocab_size = get_tokenizer(str(vocab), "custom")
        with BUILDING:  # engines/building.py: torch's default dtype is the LLM's while transformers builds it
            model = CFM(
                transformer=DiT(**arch(config), text_num_embeds=vocab_size, mel_dim=N_MELS),
                mel_spec_kwargs=dict(n_fft=1024, hop_length=HOP, win_length=1024, n_mel_channels=N_MELS,
                                     target_sample_rate=SAMPLE_RATE, mel_spec_type="vocos"),
                odeint_kwargs=dict(method="euler"),
                vocab_char_map=vocab_map,
            )
            try:
                model.load_state_dict(checkpoint_state(ckpt))
            except RuntimeError as exc:
                raise TalkgenError(f"{ckpt} does not fit tts.arch '{config.arch}': {str(exc).splitlines()[0]}") from None
            self.model = model.to(self.device, dtype=compute_dtype(self.device)).eval()
            self.vocoder = Vocos.from_hparams(str(vocoder_dir / "config.yaml"))
            self.vocoder.load_state_dict(torch.load(str(vocoder_dir / "pytorch_model.bin"), map_location="cpu", weights_only=True))
            self.vocoder = self.vocoder.to(self.device).eval()
        audio = torch.from_numpy(reference.audio.copy())[None]
        self._ref_rms = float(audio.pow(2).mean().sqrt())
        if self._ref_rms < TARGET_RMS:
            audio = audio * (TARGET_RMS / self._ref_rms)
        self._ref_audio = audio.to(self.device)
        # The mel of a centred STFT has one frame more than whole hops: slice the reference off exactly.
        self._ref_frames = audio.shape[-1] // HOP + 1
        # F5 reads the reference transcript and the new text as one line: keep a space between.
        self._ref_text = reference.text if reference.text.endswith(" ") else reference.text + " "
        self._calls = 0

    def fresh(self) -> None:
        """Seeds count from the recipe's again, as in a newly loaded engine: a job's speech in a
        batch worker is what a render of its own makes."""
        self._calls = 0

    def identity(self) -> dict:
        from talkgen.job import sha256_file

        return identity(self.config, sha256_file(self.reference.path))

    def speak(self, text: str) -> Iterator[Speech]:
        import torch
        from f5_tts.model.utils import convert_char_to_pinyin

        c = self.config
        ref_bytes = max(1, len(self._ref_text.encode("utf-8")))
        # F5 has no duration model: it is told the length, from the reference's speaking rate.
        frames = self._ref_frames + int(self._ref_frames / ref_bytes * len(text.encode("utf-8")) / c.speed)
        with torch.inference_mode():
            mel, _ = self.model.sample(
                cond=self._ref_audio, text=convert_char_to_pinyin([self._ref_text + text]), duration=frames,
                steps=c.steps, cfg_strength=c.cfg_strength, sway_sampling_coef=c.sway, seed=c.seed + self._calls,
            )
            self._calls += 1
            mel = mel[:, self._ref_frames:, :].float().permute(0, 2, 1)
            wave = self.vocoder.decode(mel)
        if self._ref_rms < TARGET_RMS:
            wave = wave * (self._ref_rms / TARGET_RMS)
        audio = wave.squeeze(0).cpu().numpy().astype("float32")
        yield Speech(audio=audio, phonemes=char_timeline(text, len(audio)), aligned=False)


def char_timeline(text: str, samples: int) -> list[tuple[str, int]]:
    """Spread the characters over the audio in proportion to their UTF-8 bytes.

    F5 gives no alignment; it sizes its output by the same byte count, so this is its
    own idea of where each character falls. Spaces and punctuation become the silent
    symbols that time words and close the puppet's mouth.
    """
    symbols = [(ch.lower() if ch.isalnum() else (" " if ch.isspace() else ch), len(ch.encode("utf-8"))) for ch in text]
    total = sum(w for _, w in symbols) or 1
    out, acc, pos = [], 0, 0
    for symbol, w in symbols:
        acc += w
        end = samples * acc // total
        out.append((symbol, end - pos))
        pos = end
    return out


def load(config: TTSConfig, reference: Reference, recipe: str = "cpu") -> F5TTS:
    return F5TTS(config, reference, recipe)


BACKEND = Backend(kind="tts", names=("f5-tts",), identity=identity, check=None, load=load, memory=memory_need,
                  formats=formats, doctor=None, avatar=None,
                  settings=Settings(output=("model", "arch", "vocoder", "voice", "voice_text", "steps", "cfg_strength", "sway", "speed",
                                            "seed", "device"),
                                    # the model, the vocoder and the voice to clone; sampling is read at each call
                                    reload=("model", "arch", "vocoder", "voice", "voice_text", "device")))
