"""The GPU memory planner: parameter counts read from the tiny models' real files equal
what the real loaders build, and the per-GPU arithmetic refuses what cannot fit."""

from dataclasses import asdict

import pytest
import tiny_f5
import torch
from conftest import ROOT
from incli import talkgen
from test_reply import _tiny_llama

from talkgen.errors import TalkgenError
from talkgen.gpus import parse_query
from talkgen.engines.footprint import ACTIVATIONS, GIB
from talkgen.memory import needs, plan
from talkgen.recipe import load_recipe

# nvidia-smi --query-gpu=index,name,memory.total,compute_cap,driver_version,pci.bus_id rows
H100 = "\n".join(f"{i}, NVIDIA H100 80GB HBM3, 81559, 9.0, 570.124.06, 00000000:{i + 0x18:02X}:00.0" for i in range(8))
RTX = "0, NVIDIA GeForce RTX 4090, 24564, 8.9, 570.124.06, 00000000:01:00.0"


def parse_gpus(text):
    return parse_query(text)


def _floats(state: dict) -> int:
    return sum(t.numel() for t in state.values() if t.is_floating_point())


@pytest.mark.slow
def test_counts_match_the_loaded_tiny_models(tmp_path):
    from talkgen.engines import f5_tts
    from talkgen.engines.llm import load_llm
    from talkgen.engines.stt import load_stt
    from talkgen.engines.tts import load_tts
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(n_mels=128, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
                           n_vocab=51866, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=1)
    torch.manual_seed(0)
    torch.save({"dims": asdict(dims), "model_state_dict": Whisper(dims).state_dict()}, tmp_path / "w.pt")
    llama = _tiny_llama(tmp_path / "llama", mute=False)
    f5 = tiny_f5.build(tmp_path / "f5")
    recipe = load_recipe("cpu", [
        "stt.engine=openai-whisper", f"stt.model={tmp_path / 'w.pt'}", f"llm.model={llama}", *tiny_f5.overrides(f5),
        f"tts.voice={ROOT / 'examples' / 'question.wav'}", "tts.voice_text=a question",
        "placement.stt=cuda:0", "placement.llm=cuda:0", "placement.tts=cuda:0",
    ])
    got = {n.engine: n for n in needs(recipe, {"stt", "llm", "tts", "avatar"})}
    assert set(got) == {"stt", "llm", "tts"} and all(n.source == "files" for n in got.values())

    # Load each through talkgen's real engine, on the CPU, and count what it holds.
    for section in (recipe.stt, recipe.llm, recipe.tts):
        section.device = "cpu"
    stt = load_stt(recipe.stt)
    assert got["stt"].params == _floats(stt.model.state_dict())
    # whisper.load_model holds float32 weights whatever the checkpoint's and the device: so does the plan.
    assert {p.dtype for p in stt.model.parameters()} == {torch.float32} and got["stt"].dtype == "float32"
    llm = load_llm(recipe.llm)
    assert got["llm"].params == sum(p.numel() for p in llm.model.parameters())
    tts = load_tts(recipe.tts, f5_tts.load_reference(recipe.tts, "a question"))
    assert got["tts"].params == _floats(tts.model.state_dict()) + _floats(tts.vocoder.state_dict())
    # The arithmetic: params x bytes x (1 + activations); whisper in fp32, the LLM in bf16.
    assert got["stt"].gib == round(got["stt"].params * 4 * (1 + ACTIVATIONS) / GIB, 3)
    assert got["llm"].dtype == "bfloat16"


def test_the_eight_gpu_recipe_fits_eight_h100s():
    recipe = load_recipe("h100-8x")
    rows = {p.gpu.index: p for p in plan(recipe, {"stt", "llm", "tts", "avatar"}, parse_gpus(H100))}
    assert sorted(rows) == list(range(8)) and all(p.fits for p in rows.values())
    assert [n.engine for n in rows[0].needs] == ["avatar"] and rows[0].peak_gib == 41.42 + 1.5  # a DiT rank, with FP8
    llm = rows[6].needs[0]
    assert llm.params == 3_210_000_000 and llm.source == "manifest"  # nothing pulled here
    assert llm.gib == round(3.21e9 * 2 * 1.2 / GIB, 3) and rows[6].peak_gib == round(llm.gib + 1.5, 2)


def test_engines_sharing_a_gpu_take_turns_unless_resident():
    gpus = parse_gpus(H100)[:1]
    in_turn = plan(load_recipe("gpu-1x"), {"stt", "llm", "tts", "avatar"}, gpus)[0]
    assert in_turn.peak_gib == 57.96 + 1.5  # the largest one, LiveAvatar, alone
    kept = plan(load_recipe("gpu-1x", ["placement.resident=[llm, stt]"]), {"stt", "llm", "tts", "avatar"}, gpus)[0]
    llm, stt = (next(n.gib for n in kept.needs if n.engine == e) for e in ("llm", "stt"))
    assert kept.peak_gib == round(llm + stt + 57.96 + 1.5, 2)


def test_a_placement_that_cannot_fit_says_the_numbers():
    with pytest.raises(TalkgenError) as err:
        plan(load_recipe("gpu-1x"), {"stt", "llm", "tts", "avatar"}, parse_gpus(RTX))
    msg = str(err.value)
    assert msg.startswith("placement does not fit: GPU 0 (NVIDIA GeForce RTX 4090) needs 59.5 GiB at its peak")
    assert "of its 24.0 GiB" in msg and "avatar liveavatar 58.0" in msg
    with pytest.raises(TalkgenError, match=r"needs GPUs this machine lacks: stt on GPU 5, llm on GPU 6, tts on GPU 7.*; 1 GPU\(s\) visible"):
        plan(load_recipe("h100-8x"), {"stt", "llm", "tts", "avatar"}, parse_gpus(RTX))


def test_only_the_engines_the_job_loads_are_planned():
    recipe = load_recipe("cpu", ["placement.llm=cuda:0"])
    assert needs(recipe, {"tts", "avatar"}) == []  # --say: no LLM, and nothing else is on a GPU
    assert [n.engine for n in needs(recipe, {"llm", "tts"})] == ["llm"]


@pytest.mark.parametrize("recipe", ["gpu-1x", "h100-8x"])
def test_gpu_recipes_refuse_this_machine_in_one_line_before_any_work(tmp_path, recipe):
    (tmp_path / "s.txt").write_text("Hello there.")
    proc = talkgen(["render", "s.txt", "--say", "--recipe", recipe, "-o", "o.mp4"], tmp_path)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith(f"error: placement of recipe '{recipe}' needs GPUs this machine lacks")
    assert "no GPU visible" in proc.stderr
    assert not (tmp_path / ".talkgen").exists()  # not even a job directory


# -- GPU numbering: placement's cuda:N counts within CUDA_VISIBLE_DEVICES, as torch does -------------


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    from talkgen.gpus import visible

    eight = parse_gpus(H100)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible(eight) == eight
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6, 4")
    six, four = visible(eight)
    assert (six.index, six.physical, six.bus_id) == (0, 6, eight[6].bus_id) and (four.index, four.physical) == (1, 4)
    assert six.label == "GPU 0 (NVIDIA H100 80GB HBM3, nvidia-smi's 6)" and eight[6].label == "GPU 6 (NVIDIA H100 80GB HBM3)"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,9,3")  # CUDA stops at the first entry it cannot use
    assert [g.physical for g in visible(eight)] == [2]
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert visible(eight) == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6")
    with pytest.raises(TalkgenError, match="names a GPU by UUID or MIG id .*list indices"):
        visible(eight)


def test_the_planner_places_cuda_0_on_the_first_gpu_cuda_visible_devices_lists(monkeypatch, tmp_path):
    from talkgen.memory import check_placement, describe

    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncat <<'EOF'\n{H100}\nEOF\n")
    smi.chmod(0o755)
    monkeypatch.setenv("TALKGEN_NVIDIA_SMI", str(smi))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    (row,) = check_placement(load_recipe("gpu-1x"), {"stt", "llm", "tts", "avatar"})
    assert row.gpu.physical == 4 and describe(row).startswith("GPU 0 (NVIDIA H100 80GB HBM3, nvidia-smi's 4) needs 59.5 GiB")
    with pytest.raises(TalkgenError) as err:
        check_placement(load_recipe("h100-8x"), {"stt", "llm", "tts", "avatar"})
    assert str(err.value).endswith("stt on GPU 5, llm on GPU 6, tts on GPU 7, avatar on GPU 4; "
                                   "CUDA_VISIBLE_DEVICES='4,5,6,7' leaves 4 GPU(s) visible, numbered from 0")


def test_the_avatar_ranks_get_their_gpus_from_within_cuda_visible_devices(monkeypatch):
    from talkgen.errors import UsageError
    from talkgen.placement import avatar_gpus, rank_visible_devices

    ranks = avatar_gpus("cuda:0,1,2,3,4")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert rank_visible_devices(ranks) == "0,1,2,3,4" and rank_visible_devices("") is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4,5,6,7,0")  # a scheduler's pick: never widened
    assert rank_visible_devices(ranks) == "3,4,5,6,7"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4")
    with pytest.raises(UsageError, match="placement.avatar names GPU 2, but CUDA_VISIBLE_DEVICES='3,4' shows 2"):
        rank_visible_devices(ranks)


def test_a_render_under_cuda_visible_devices_is_refused_with_its_numbering_before_any_work(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncat <<'EOF'\n{H100}\nEOF\n")
    smi.chmod(0o755)
    (tmp_path / "s.txt").write_text("Hello there.")
    env = {"TALKGEN_NVIDIA_SMI": str(smi), "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    proc = talkgen(["render", "s.txt", "--say", "--recipe", "h100-8x", "-o", "o.mp4"], tmp_path, env)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "CUDA_VISIBLE_DEVICES='0,1,2,3' leaves 4 GPU(s) visible" in proc.stderr
    assert not (tmp_path / ".talkgen").exists()
