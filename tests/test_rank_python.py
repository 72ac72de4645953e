"""The avatar ranks under another Python (render.python), through the real launcher.

The second environment (tests/envs.py) holds a stack that cannot live beside talkgen's:
torch 2.13.0 (talkgen pins 2.9.1), numpy<2 and transformers 4.51.3, and no talkgen. The
far side finds talkgen's code through the link folder talkgen.ranks.interpreter makes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import envs
import incli
from talkgen import media

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "standin_liveavatar"
SCRIPT = " ".join(f"Sentence {i} is spoken here, and then a short pause follows." for i in range(2))
TP = ["render", "s.txt", "--say", "--size", "96", "render.engine=tp-test", "render.max_chunk_s=1", "render.min_chunk_s=0.5", "-q"]
# Modules of talkgen that must never load on the far side: they need talkgen's own environment.
NEAR_ONLY = ("talkgen.cli", "talkgen.pipeline", "talkgen.face", "talkgen.weights", "talkgen.stages", "talkgen.chat",
             "talkgen.engines.puppet", "talkgen.engines.transformers_llm", "talkgen.doctor", "talkgen.memory")


def talkgen(args, cwd, env=None):
    return incli.talkgen(args, cwd, {"OMP_NUM_THREADS": "1", **(env or {})})


def render_detail(report: Path) -> dict:
    return next(s for s in json.loads(report.read_text())["stages"] if s["name"] == "render")["detail"]


@pytest.fixture(scope="module")
def far():
    return envs.far_python()


@pytest.fixture(scope="module")
def tp_renders(far, tmp_path_factory):
    """tp-test on 2 ranks, once in talkgen's own Python and once under the second environment."""
    d = tmp_path_factory.mktemp("far")
    (d / "s.txt").write_text(SCRIPT)
    for name, extra in (("own", []), ("far", [f"render.python={far}"])):
        proc = talkgen([*TP, "render.nproc=2", *extra, "-o", f"{name}.mp4", "--job-dir", name], d)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return d


@pytest.mark.slow
def test_the_second_environment_holds_a_stack_that_conflicts_with_talkgens(far):
    code = ("import importlib.util as u, numpy, torch, transformers; "
            "print(torch.__version__, numpy.__version__, transformers.__version__, u.find_spec('talkgen'), u.find_spec('typer'))")
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the environment itself, not a path a developer set
    out = subprocess.run([str(far), "-c", code], capture_output=True, text=True, timeout=120, cwd="/", env=plain)
    assert out.returncode == 0, out.stderr
    torch_v, numpy_v, transformers_v, talkgen_spec, typer_spec = out.stdout.split()
    assert torch_v.startswith("2.13.0") and numpy_v.startswith("1.") and transformers_v == "4.51.3"
    assert talkgen_spec == typer_spec == "None"


@pytest.mark.slow
def test_two_tp_test_ranks_render_under_the_second_environment_as_in_talkgens_own(tp_renders, far):
    own, there = render_detail(tp_renders / "own.report.json"), render_detail(tp_renders / "far.report.json")
    assert there["python"] == str(far) and there["torch"].startswith("2.13.0") and there["ranks"] == 2
    assert own["python"] == sys.executable and own["torch"].split("+")[0] == "2.9.1"
    # Another torch makes the same frames within rounding: the same function, not another back end.
    size = 96
    a, b = media.gray_frames(tp_renders / "own.mp4", size), media.gray_frames(tp_renders / "far.mp4", size)
    a, b = np.array(list(a), np.float32), np.array(list(b), np.float32)
    assert a.shape == b.shape and len(a) > 50
    assert np.abs(a - b).mean() < 1.0
    assert np.allclose(media.decode_audio(tp_renders / "own.mp4", 8000), media.decode_audio(tp_renders / "far.mp4", 8000), atol=1e-4)
    # The ranks and their launcher ran there, and the ranks' logs stayed in the job.
    logs = tp_renders / "far" / "ranks" / "logs"
    assert (logs / "agent.log").is_file() and list(logs.rglob("*stderr*"))


@pytest.mark.slow
def test_the_far_side_loads_only_the_rank_code_of_talkgen(tp_renders):
    timing = json.loads((tp_renders / "far" / "ranks" / "rank0.timing.json").read_text())
    loaded = timing["talkgen_modules"]
    assert {"talkgen.chunk_writer", "talkgen.engines.tp_test", "talkgen.speech"} <= set(loaded)  # the worker itself is __main__
    assert not [m for m in loaded if m.startswith(NEAR_ONLY)], loaded


@pytest.mark.slow
def test_liveavatars_five_ranks_render_under_the_second_environment(far, tmp_path):
    (tmp_path / "s.txt").write_text("Hello there, this is the first sentence. And this is a second one, a little longer.")
    ckpt, lora = tmp_path / "wan", tmp_path / "lora"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    lora.mkdir()
    (lora / "liveavatar.safetensors").write_bytes(b"x")
    proc = talkgen(["render", "s.txt", "--say", "--size", "96", "-o", "o.mp4", "--job-dir", "job", "-q",
                    "render.engine=liveavatar", "render.nproc=5", "render.dtype=bfloat16", f"render.liveavatar.checkout={STANDIN}",
                    f"render.liveavatar.ckpt_dir={ckpt}", f"render.liveavatar.lora_dir={lora}", "render.liveavatar.size=128*64",
                    "render.liveavatar.infer_frames=12", "render.liveavatar.clips_per_chunk=2", f"render.python={far}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    detail = render_detail(tmp_path / "o.report.json")
    assert detail["ranks"] == 5 and detail["python"] == str(far) and detail["torch"].startswith("2.13.0")
    plan = json.loads((tmp_path / "job" / "plan.json").read_text())
    info = next(s for s in media.probe(tmp_path / "o.mp4")["streams"] if s["codec_type"] == "video")
    assert (info["width"], info["height"]) == (64, 64) and int(info["nb_frames"]) == plan["total_frames"] and len(plan["chunks"]) >= 2
    loaded = json.loads((tmp_path / "job" / "ranks" / "rank4.timing.json").read_text())["talkgen_modules"]
    assert "talkgen.engines.liveavatar" in loaded and not [m for m in loaded if m.startswith(NEAR_ONLY)], loaded


# Run under Python 3.10 with numpy 1.x and no torch: every module the ranks loaded imports, and
# the torch-free half of a rank's work (speech in, frames through x264 into the chunk store,
# the reference PNG, the recipe) runs.
PY310_WORK = r"""
import importlib, json, sys
from pathlib import Path
modules, folder, recipe = json.loads(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
for name in modules:
    importlib.import_module(name)
import numpy as np
from talkgen.chunk_writer import ChunkFinisher, render_one
from talkgen.chunks import Plan, chunk_dir, next_chunk
from talkgen.png import write_png
from talkgen.recipe import recipe_from_dict
from talkgen.speech import SpeechTrack, WavWriter

assert recipe_from_dict(recipe).render.engine == "tp-test"
w = WavWriter(folder / "speech.wav", 16000)
w.write(np.zeros(16000, np.float32))
w.close()
(folder / "alignment.json").write_text(json.dumps({"sample_rate": 16000, "samples": 16000, "sentences": [], "phonemes": []}))
track = SpeechTrack.load(folder / "speech.wav", folder / "alignment.json")

class Grey:
    fps, width, height = 25, 32, 32
    def render_chunk(self, track, start, end, continuity):
        for i in range(start, end):
            yield np.full((32, 32, 3), 10 * i % 250, np.uint8)
    def continuity_after(self, end):
        return {"frame": end}

plan = Plan.from_dict({"fps": 25, "sample_rate": 16000, "samples": 16000, "total_frames": 16, "max_chunk_s": 0.32,
                       "chunks": [{"index": 0, "start_frame": 0, "end_frame": 8}, {"index": 1, "start_frame": 8, "end_frame": 16}]})
chunk_dir(folder)
finisher = ChunkFinisher(folder, "k")
chunk, continuity, pos = next_chunk(folder, plan, "k")
while chunk is not None:
    continuity = render_one(folder, chunk, "k", Grey(), track, continuity, 20, "veryfast", finisher)
    chunk, continuity, pos = next_chunk(folder, plan, "k", pos + 1, continuity)
finisher.join()
assert next_chunk(folder, plan, "k")[0] is None
write_png(folder / "p.png", np.zeros((4, 6, 3), np.uint8))
print("ok", sys.version_info[:2], np.__version__)
"""


@pytest.mark.slow
def test_the_far_side_code_imports_and_runs_on_python_3_10_without_torch(tp_renders, tmp_path):
    from talkgen.ranks.interpreter import code_path, far_env
    from talkgen.recipe import load_recipe

    py310 = envs.py310_python()
    loaded = json.loads((tp_renders / "far" / "ranks" / "rank0.timing.json").read_text())["talkgen_modules"]
    modules = sorted({*loaded, "talkgen.ranks.worker", "talkgen.ranks.agent", "talkgen.ranks.probe", "talkgen.engines.liveavatar",
                      "talkgen.gpus", "talkgen.png"})
    recipe = load_recipe("cpu", ["render.engine=tp-test"]).to_dict()
    proc = subprocess.run([str(py310), "-c", PY310_WORK, json.dumps(modules), str(tmp_path), json.dumps(recipe)],
                          capture_output=True, text=True, env=far_env(), cwd=code_path(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[0] == "ok" and "(3, 10)" in proc.stdout
    assert [p.name for p in sorted((tmp_path / "chunks").glob("*.mp4"))] == ["00000.mp4", "00001.mp4"]
    assert int(media.probe(tmp_path / "chunks" / "00001.mp4")["streams"][0]["nb_read_packets"]) == 8


# Each bad setup: one line naming the interpreter and the fix, before anything loads (no job directory).
def _refused(tmp_path, *args, env=None, code=None):
    (tmp_path / "s.txt").write_text("Hello there.")
    proc = talkgen([*TP, *args, "-o", "o.mp4", "--job-dir", "job"], tmp_path, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert code is None or proc.returncode == code
    assert not (tmp_path / "job").exists() and not (tmp_path / "o.mp4").exists()
    return lines[0]


def test_a_python_that_does_not_exist_is_one_line(tmp_path):
    line = _refused(tmp_path, "render.python=/opt/envs/none/bin/python", code=2)
    assert "render.python=/opt/envs/none/bin/python does not exist" in line


def test_a_file_that_is_not_python_is_one_line(tmp_path):
    script = tmp_path / "notpython"
    script.write_text("#!/bin/sh\necho hello from sh\n")
    script.chmod(0o755)
    line = _refused(tmp_path, f"render.python={script}", code=2)
    assert f"render.python={script} is not a Python interpreter talkgen can use (hello from sh)" in line
    text = tmp_path / "text"
    text.write_text("not a program")
    assert "is not an executable file" in _refused(tmp_path, f"render.python={text}", code=2)


def test_a_python_too_old_is_one_line(tmp_path):
    old = envs.pyenv_python("3.9")
    if old is None:
        pytest.skip("this machine has no Python 3.9 under pyenv")
    line = _refused(tmp_path, f"render.python={old}")
    assert f"render.python={old} is Python 3.9" in line and "need Python 3.10 or newer" in line


def test_a_python_without_torch_is_one_line(tmp_path):
    py310 = envs.py310_python()  # this also shows the probe itself runs on 3.10
    line = _refused(tmp_path, f"render.python={py310}")
    assert f"render.python={py310} has no torch (ModuleNotFoundError: No module named 'torch')" in line
    assert f"{py310} -m pip install torch" in line


@pytest.mark.slow
def test_a_torch_that_cannot_see_the_placements_gpus_is_one_line(tmp_path, far):
    from test_doctor import machine

    line = _refused(tmp_path, f"render.python={far}", "placement.avatar=cuda:0", env=machine("h100-1x", tmp_path))
    assert f"render.python={far}: its torch 2.13.0+cpu (a CPU build) sees 0 GPU(s), the placement needs 1" in line
    assert "install a CUDA build of torch there" in line


@pytest.mark.slow
def test_a_back_end_that_does_not_import_there_is_one_line_naming_the_module(tmp_path, far):
    broken = tmp_path / "LiveAvatar"
    pipeline = broken / "liveavatar" / "models" / "wan"
    pipeline.mkdir(parents=True)
    for folder in (broken / "liveavatar", broken / "liveavatar" / "models", pipeline):
        (folder / "__init__.py").write_text("")
    (pipeline / "causal_s2v_pipeline.py").write_text("import diffusers\n")
    (tmp_path / "wan").mkdir()
    (tmp_path / "wan" / "config.json").write_text("{}")
    line = _refused(tmp_path, "render.engine=liveavatar", "render.dtype=bfloat16", f"render.liveavatar.checkout={broken}",
                    f"render.liveavatar.ckpt_dir={tmp_path / 'wan'}", "render.liveavatar.lora=false", f"render.python={far}")
    assert (f"render.python={far} cannot import LiveAvatar from {broken} (liveavatar.models.wan.causal_s2v_pipeline: "
            "ModuleNotFoundError: No module named 'diffusers')") in line


def _broken_checkout(tmp_path):
    """A LiveAvatar-shaped checkout whose pipeline imports a package talkgen's environment lacks, as upstream's imports decord."""
    import shutil

    broken = tmp_path / "LiveAvatar"
    shutil.copytree(STANDIN, broken)
    pipeline = broken / "liveavatar" / "models" / "wan" / "causal_s2v_pipeline.py"
    pipeline.write_text("import decord  # noqa: F401\n" + pipeline.read_text())
    (tmp_path / "wan").mkdir()
    (tmp_path / "wan" / "config.json").write_text("{}")
    return broken


def test_liveavatar_that_talkgens_own_python_cannot_import_stops_before_the_first_stage(tmp_path):
    """Without render.python, LiveAvatar would render in talkgen's own Python: a recording was
    transcribed, answered, spoken and planned before its import failed with a traceback."""
    broken = _broken_checkout(tmp_path)
    line = _refused(tmp_path, "render.engine=liveavatar", "render.dtype=bfloat16", f"render.liveavatar.checkout={broken}",
                    f"render.liveavatar.ckpt_dir={tmp_path / 'wan'}", "render.liveavatar.lora=false", "render.liveavatar.size=128*64",
                    "render.liveavatar.infer_frames=12")
    assert line == (f"error: talkgen's own Python ({sys.executable}) cannot import LiveAvatar from {broken} "
                    "(liveavatar.models.wan.causal_s2v_pipeline: ModuleNotFoundError: No module named 'decord'): LiveAvatar needs a "
                    "Python environment of its own; make it as docs/production.md says, then point talkgen at it once: "
                    "export TALKGEN_LIVEAVATAR_PYTHON=/path/to/env/bin/python, or save it with talkgen doctor --recipe RECIPE "
                    "--save-avatar-python /path/to/env/bin/python")


def test_the_avatars_python_is_set_once_by_variable_or_saved_by_doctor(tmp_path, monkeypatch):
    from talkgen.recipe import load_recipe

    config = tmp_path / "config.yaml"
    monkeypatch.setenv("TALKGEN_CONFIG", str(config))
    la = ["render.engine=liveavatar", f"render.liveavatar.checkout={STANDIN}"]
    assert load_recipe("gpu-1x").render.python == "" and load_recipe("cpu").render.python == ""
    # Doctor checks the Python, and saves it only once it passes (here talkgen's own, with the stand-in).
    proc = subprocess.run([sys.executable, "-m", "talkgen", "doctor", "--json", *la, "--save-avatar-python", "/opt/envs/none/bin/python"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    saved = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}["saved"]
    assert proc.returncode == 1 and saved["status"] == "fail" and not config.exists()
    proc = subprocess.run([sys.executable, "-m", "talkgen", "doctor", "--json", *la, "--save-avatar-python", sys.executable],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    saved = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}["saved"]
    assert saved["status"] == "ok" and saved["detail"].startswith(f"liveavatar runs under {sys.executable} from now on")
    assert load_recipe("gpu-1x").render.python == sys.executable  # no render.python to give
    assert load_recipe("cpu").render.python == ""  # the puppet has no environment of its own
    assert load_recipe("cpu", ["render.engine=tp-test"]).render.python == ""  # saved for liveavatar only
    monkeypatch.setenv("TALKGEN_LIVEAVATAR_PYTHON", "/opt/envs/la/bin/python")
    assert load_recipe("gpu-1x").render.python == "/opt/envs/la/bin/python"  # the variable, over the file
    assert load_recipe("gpu-1x", ["render.python=/opt/other/bin/python"]).render.python == "/opt/other/bin/python"
    config.write_text("avatar_python: [1, 2]\n")
    monkeypatch.delenv("TALKGEN_LIVEAVATAR_PYTHON")
    with pytest.raises(Exception, match=f"talkgen's config {config} must be a mapping"):
        load_recipe("gpu-1x")


@pytest.mark.slow
def test_flash_attention_missing_stops_a_gpu_render_and_is_a_warning_on_the_cpu(far):
    """From a real probe of the second environment, which has neither flash-attn."""
    from talkgen.ranks.interpreter import probe, problems
    from talkgen.recipe import load_recipe

    args = ["render.engine=liveavatar", f"render.liveavatar.checkout={STANDIN}", f"render.python={far}"]
    cpu = load_recipe("cpu", args).render
    found = probe(cpu)
    assert found["liveavatar"]["flash_attn"] == [] and found["liveavatar"]["import"] == {}
    errors, warnings = problems(cpu, found)
    assert not errors and any("neither flash_attn_3 nor flash-attn" in w for w in warnings)
    gpu = load_recipe("cpu", [*args, "placement.avatar=cuda:0"]).render
    errors, _ = problems(gpu, found)
    assert any("neither flash_attn_3 nor flash-attn" in e for e in errors)


@pytest.mark.slow
def test_the_puppet_does_not_take_render_python(tmp_path, far):
    line = _refused(tmp_path, "render.engine=puppet", f"render.python={far}", code=2)
    assert "the puppet renders in talkgen's own process: leave render.python blank" in line


@pytest.mark.slow
def test_doctor_reports_the_avatar_environment_as_seen_from_there(tmp_path, far):
    def doctor(*args):
        proc = incli.talkgen(["doctor", "--json", *args], tmp_path)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.returncode, {c["name"]: c for c in json.loads(proc.stdout)["checks"]}

    code, checks = doctor("render.engine=tp-test", f"render.python={far}")
    env = checks["avatar env"]
    assert code == 0 and env["status"] == "ok"
    assert env["data"]["executable"] == str(far) and env["data"]["torch"]["version"].startswith("2.13.0")
    assert f"{far}; Python 3.11" in env["detail"] and "a CPU build of torch" in env["detail"]
    code, checks = doctor("render.engine=liveavatar", "render.nproc=5", f"render.liveavatar.checkout={STANDIN}", f"render.python={far}")
    env = checks["avatar env"]
    assert env["status"] == "warning" and "LiveAvatar imports; no flash attention" in env["detail"]
    assert "install flash_attn_3 (Hopper) or flash-attn==2.8.3 there" in env["fix"]
    code, checks = doctor("render.engine=tp-test", "render.python=/opt/envs/none/bin/python")
    assert code == 1 and checks["avatar env"]["status"] == "fail" and "does not exist" in checks["avatar env"]["fix"]
    code, checks = doctor()  # the puppet: no ranks, no check
    assert "avatar env" not in checks


@pytest.mark.slow
def test_a_gpu_without_bf16_is_refused_with_what_suits_the_back_end(far):
    """A probe's answer as a T4 gives it (compute 7.5, no bf16): the fix depends on the back end."""
    from talkgen.ranks.interpreter import problems
    from talkgen.recipe import load_recipe

    found = {"python": "3.10.14", "numpy": {"ok": True, "version": "1.26.4"}, "torch": {"ok": True, "version": "2.8.0+cu128"},
             "talkgen": {}, "distributed": {"nccl": True, "gloo": True}, "fp8_matmul": True,
             "cuda": {"build": "12.8", "available": True, "bf16": False,
                      "devices": [{"name": "Tesla T4", "capability": [7, 5], "memory_gib": 14.6}]}}
    tp = load_recipe("cpu", ["render.engine=tp-test", "render.dtype=bfloat16", "placement.avatar=cuda:0", f"render.python={far}"]).render
    assert any("no bfloat16 on these GPUs: set render.dtype=float16" in e for e in problems(tp, found)[0])
    found["liveavatar"] = {"checkout": "/opt/LiveAvatar", "import": {}, "flash_attn": ["flash_attn"]}
    la = load_recipe("cpu", ["render.engine=liveavatar", "render.dtype=bfloat16", "placement.avatar=cuda:0", f"render.python={far}"]).render
    assert any("LiveAvatar runs only in bfloat16: use GPUs of compute capability 8.0 or newer" in e for e in problems(la, found)[0])
