"""A random-weight F5-TTS (DiT + CFM) and Vocos, saved as the real releases are laid out:
an EMA safetensors checkpoint with vocab.txt beside it, and a Vocos folder with config.yaml
and pytorch_model.bin. Tiny by default; benchmarks/gpu_check.py also builds F5-TTS v1 Base
with vocos-mel-24khz's shape at full size."""

from __future__ import annotations

from pathlib import Path

ARCH = {"dim": 64, "depth": 2, "heads": 2, "dim_head": 32, "ff_mult": 2, "text_dim": 32, "text_mask_padding": True,
        "conv_layers": 1, "pe_attn_head": None}


def vocos_config(dim: int, intermediate_dim: int, num_layers: int) -> str:
    """A Vocos config.yaml laid out as charactr/vocos-mel-24khz's (24 kHz, 100 mels, hop 256), at
    another size: that model is vocos_config(512, 1536, 8)."""
    return f"""\
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args: {{sample_rate: 24000, n_fft: 1024, hop_length: 256, n_mels: 100, padding: center}}
backbone:
  class_path: vocos.models.VocosBackbone
  init_args: {{input_channels: 100, dim: {dim}, intermediate_dim: {intermediate_dim}, num_layers: {num_layers}}}
head:
  class_path: vocos.heads.ISTFTHead
  init_args: {{dim: {dim}, n_fft: 1024, hop_length: 256, padding: center}}
"""


VOCOS_CONFIG = vocos_config(32, 64, 1)


def build(root: Path, seed: int = 0, arch: dict | str = ARCH, vocos: str = VOCOS_CONFIG, name: str = "tiny") -> dict[str, Path]:
    """Write the model under root; return the paths a recipe points at, and its parameter counts.

    arch: the DiT's shape, written to a YAML beside it; or the name of a config f5-tts ships
    (F5TTS_v1_Base), which the recipe then names as the production recipe does."""
    import shutil
    from importlib.resources import files

    import torch
    import yaml
    from safetensors.torch import save_file
    from vocos import Vocos

    from talkgen.engines.f5_tts import model_classes

    CFM, DiT = model_classes()  # first: any f5_tts.model import before it would run the package's __init__
    from f5_tts.model.utils import get_tokenizer

    torch.manual_seed(seed)
    model_dir, vocoder_dir = root / f"F5TTS_{name}", root / f"vocos-{name}"
    model_dir.mkdir(parents=True, exist_ok=True)
    vocoder_dir.mkdir(parents=True, exist_ok=True)
    vocab = model_dir / "vocab.txt"
    shutil.copyfile(str(files("f5_tts").joinpath("infer/examples/vocab.txt")), vocab)
    if isinstance(arch, str):
        shape = yaml.safe_load(files("f5_tts").joinpath(f"configs/{arch}.yaml").read_text(encoding="utf-8"))["model"]["arch"]
    else:
        shape, arch = arch, root / f"F5TTS_{name}.yaml"
        arch.write_text(yaml.safe_dump({"model": {"name": f"F5TTS_{name}", "backbone": "DiT", "arch": shape}}))
    vocab_map, vocab_size = get_tokenizer(str(vocab), "custom")
    cfm = CFM(transformer=DiT(**shape, text_num_embeds=vocab_size, mel_dim=100),
              mel_spec_kwargs=dict(n_fft=1024, hop_length=256, win_length=1024, n_mel_channels=100,
                                   target_sample_rate=24000, mel_spec_type="vocos"),
              vocab_char_map=vocab_map)
    state = {f"ema_model.{k}": v.contiguous() for k, v in cfm.state_dict().items()}
    state["initted"], state["step"] = torch.tensor(True), torch.tensor(1)
    ckpt = model_dir / "model_1.safetensors"
    save_file(state, str(ckpt))
    (vocoder_dir / "config.yaml").write_text(vocos)
    vocos = Vocos.from_hparams(str(vocoder_dir / "config.yaml"))
    torch.save(vocos.state_dict(), vocoder_dir / "pytorch_model.bin")
    return {"checkpoint": ckpt, "arch": arch, "vocoder": vocoder_dir,
            "params": sum(p.numel() for p in cfm.parameters()), "vocoder_params": sum(p.numel() for p in vocos.parameters())}


def overrides(paths: dict, steps: int = 4) -> list[str]:
    return ["tts.engine=f5-tts", f"tts.model={paths['checkpoint']}", f"tts.arch={paths['arch']}",
            f"tts.vocoder={paths['vocoder']}", f"tts.steps={steps}"]
