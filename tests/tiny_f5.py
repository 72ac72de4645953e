"""A tiny random-weight F5-TTS (DiT + CFM) and Vocos, saved as the real releases are laid out:
an EMA safetensors checkpoint with vocab.txt beside it, and a Vocos folder with config.yaml
and pytorch_model.bin."""

from __future__ import annotations

from pathlib import Path

ARCH = {"dim": 64, "depth": 2, "heads": 2, "dim_head": 32, "ff_mult": 2, "text_dim": 32, "text_mask_padding": True,
        "conv_layers": 1, "pe_attn_head": None}

VOCOS_CONFIG = """\
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args: {sample_rate: 24000, n_fft: 1024, hop_length: 256, n_mels: 100, padding: center}
backbone:
  class_path: vocos.models.VocosBackbone
  init_args: {input_channels: 100, dim: 32, intermediate_dim: 64, num_layers: 1}
head:
  class_path: vocos.heads.ISTFTHead
  init_args: {dim: 32, n_fft: 1024, hop_length: 256, padding: center}
"""


def build(root: Path, seed: int = 0) -> dict[str, Path]:
    """Write the tiny model under root; return the paths a recipe points at, and its parameter counts."""
    import shutil
    from importlib.resources import files

    import torch
    import yaml
    from f5_tts.model import CFM, DiT
    from f5_tts.model.utils import get_tokenizer
    from safetensors.torch import save_file
    from vocos import Vocos

    torch.manual_seed(seed)
    model_dir, vocoder_dir = root / "F5TTS_tiny", root / "vocos-tiny"
    model_dir.mkdir(parents=True, exist_ok=True)
    vocoder_dir.mkdir(parents=True, exist_ok=True)
    vocab = model_dir / "vocab.txt"
    shutil.copyfile(str(files("f5_tts").joinpath("infer/examples/vocab.txt")), vocab)
    arch = root / "F5TTS_tiny.yaml"
    arch.write_text(yaml.safe_dump({"model": {"name": "F5TTS_tiny", "backbone": "DiT", "arch": ARCH}}))
    vocab_map, vocab_size = get_tokenizer(str(vocab), "custom")
    cfm = CFM(transformer=DiT(**ARCH, text_num_embeds=vocab_size, mel_dim=100),
              mel_spec_kwargs=dict(n_fft=1024, hop_length=256, win_length=1024, n_mel_channels=100,
                                   target_sample_rate=24000, mel_spec_type="vocos"),
              vocab_char_map=vocab_map)
    state = {f"ema_model.{k}": v.contiguous() for k, v in cfm.state_dict().items()}
    state["initted"], state["step"] = torch.tensor(True), torch.tensor(1)
    ckpt = model_dir / "model_1.safetensors"
    save_file(state, str(ckpt))
    (vocoder_dir / "config.yaml").write_text(VOCOS_CONFIG)
    vocos = Vocos.from_hparams(str(vocoder_dir / "config.yaml"))
    torch.save(vocos.state_dict(), vocoder_dir / "pytorch_model.bin")
    return {"checkpoint": ckpt, "arch": arch, "vocoder": vocoder_dir,
            "params": sum(p.numel() for p in cfm.parameters()), "vocoder_params": sum(p.numel() for p in vocos.parameters())}


def overrides(paths: dict, steps: int = 4) -> list[str]:
    return ["tts.engine=f5-tts", f"tts.model={paths['checkpoint']}", f"tts.arch={paths['arch']}",
            f"tts.vocoder={paths['vocoder']}", f"tts.steps={steps}"]
