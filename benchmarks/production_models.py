"""The production models with random weights, in their real on-disk layouts, for the GPU check:
Whisper large-v3 (an openai-whisper checkpoint, float16 as OpenAI's are), Llama 3.2 3B Instruct
(its config.json, bfloat16 safetensors), F5-TTS v1 Base with vocos-mel-24khz (tests/tiny_f5.py
at full size). The real weights cannot reach the GPU machine; shapes, dtypes and file formats
are what the loaders and the memory planner see, so load time, speed and memory are the real
ones, though what the models say is noise.

`reduced=True` keeps every layout and vocabulary but shrinks widths and depths, for proving
the check on a CPU in minutes.

The Llama's tokenizer is a 300-token BPE trained here (tests/test_reply.py): Llama's own cannot
be fetched. The model keeps its 128,256-token embedding and head, so the compute per token is
the real model's; ids past the tokenizer's 300 decode to nothing.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

# openai-whisper's ModelDimensions for large-v3 (128 mels, 51,866 tokens), 1.55 B parameters.
WHISPER_LARGE_V3 = dict(n_mels=128, n_audio_ctx=1500, n_audio_state=1280, n_audio_head=20, n_audio_layer=32,
                        n_vocab=51866, n_text_ctx=448, n_text_state=1280, n_text_head=20, n_text_layer=32)
WHISPER_REDUCED = dict(n_audio_state=64, n_audio_head=2, n_audio_layer=1, n_text_state=64, n_text_head=2, n_text_layer=1)

# meta-llama/Llama-3.2-3B-Instruct's config.json, 3.21 B parameters (tied embedding and head).
LLAMA_3_2_3B = dict(
    architectures=["LlamaForCausalLM"], attention_bias=False, attention_dropout=0.0, head_dim=128, hidden_act="silu",
    hidden_size=3072, initializer_range=0.02, intermediate_size=8192, max_position_embeddings=131072, mlp_bias=False,
    model_type="llama", num_attention_heads=24, num_hidden_layers=28, num_key_value_heads=8, pretraining_tp=1, rms_norm_eps=1e-5,
    rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192,
                  "rope_type": "llama3"},
    rope_theta=500000.0, tie_word_embeddings=True, use_cache=True, vocab_size=128256,
)
LLAMA_REDUCED = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=64)

F5_V1_BASE = "F5TTS_v1_Base"  # the config f5-tts ships, named by the recipe as gpu-1x names it
F5_REDUCED = {"dim": 256, "depth": 4, "heads": 4, "ff_mult": 2, "text_dim": 128, "text_mask_padding": True, "qk_norm": None,
              "conv_layers": 2, "pe_attn_head": None}


def _built_on(device: str, dtype=None):
    """Initialise a model's weights on device (seconds on a GPU, minutes for billions on a CPU),
    optionally in dtype."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def context():
        old = torch.get_default_dtype()
        if dtype is not None:
            torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                yield
        finally:
            torch.set_default_dtype(old)

    return context()


def whisper(path: Path, reduced: bool, device: str) -> Path:
    """A checkpoint whisper.load_model reads: {"dims", "model_state_dict"} in float16."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(**{**WHISPER_LARGE_V3, **(WHISPER_REDUCED if reduced else {})})
    torch.manual_seed(0)
    with _built_on(device):
        model = Whisper(dims)
    state = {k: v.to("cpu", torch.float16) for k, v in model.state_dict().items()}
    del model
    torch.save({"dims": asdict(dims), "model_state_dict": state}, path)
    return path


def llama(folder: Path, reduced: bool, device: str) -> Path:
    """A Llama 3.2 3B Instruct folder: config.json, model.safetensors in bfloat16, a tokenizer."""
    import torch
    from test_reply import _chat_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    fast = _chat_tokenizer(folder)
    config = LlamaConfig(**{**LLAMA_3_2_3B, **(LLAMA_REDUCED if reduced else {}), "bos_token_id": fast.bos_token_id,
                            "eos_token_id": fast.eos_token_id, "pad_token_id": fast.eos_token_id, "dtype": "bfloat16"})
    torch.manual_seed(0)
    with _built_on(device, torch.bfloat16):
        model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    del model
    return folder


def f5(root: Path, reduced: bool) -> dict:
    """F5-TTS v1 Base's DiT (float32 EMA safetensors, as released) and Vocos mel 24 kHz."""
    import tiny_f5

    if reduced:
        return tiny_f5.build(root, arch=F5_REDUCED, vocos=tiny_f5.vocos_config(128, 384, 2), name="v1_reduced")
    return tiny_f5.build(root, arch=F5_V1_BASE, vocos=tiny_f5.vocos_config(512, 1536, 8), name="v1_Base")


def weights_mib(module) -> float:
    """What a loaded model's parameters and buffers take, in the dtypes they were loaded in."""
    tensors = [*module.parameters(), *module.buffers()]
    return round(sum(t.numel() * t.element_size() for t in tensors) / 2**20, 1)
