"""The command line's contract: one-line errors, exit 2 for usage and 1 for failures, nothing half-written."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from talkgen import media


def run(args, cwd, env=None):
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "talkgen", *args], cwd=cwd, capture_output=True, text=True, env=full_env)


def assert_one_line_error(proc, code, fragment):
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fragment in " ".join(proc.stderr.split()), proc.stderr


@pytest.fixture
def work(tmp_path):
    (tmp_path / "s.txt").write_text("Hi there.")
    return tmp_path


def _write_bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return path.name


@pytest.mark.parametrize(
    "setup, args, code, fragment",
    [
        (None, ["missing.txt", "--say", "-o", "o.mp4"], 2, "does not exist"),
        (("e.txt", b""), ["e.txt", "--say", "-o", "o.mp4"], 2, "is empty"),
        (("w.txt", b" \n\t "), ["w.txt", "--say", "-o", "o.mp4"], 2, "only whitespace"),
        (("b.txt", bytes(range(256)) * 8), ["b.txt", "--say", "-o", "o.mp4"], 2, "binary"),
        (("p.jpg", b"not an image"), ["s.txt", "--say", "-o", "o.mp4", "--portrait", "p.jpg"], 2, "not an image"),
        (None, ["s.txt", "--say", "-o", "o.mp4", "--portrait", "nope.png"], 2, "portrait nope.png does not exist"),
        (None, ["s.txt", "--say", "-o", "nodir/o.mp4"], 2, "does not exist: create it"),
        (None, ["s.txt", "--say", "-o", "/proc/o.mp4"], 2, "is not writable"),
        (None, ["s.txt", "--say", "-o", "o.mov"], 2, "must end in .mp4"),
        (None, ["s.txt", "--say", "-o", "o.mp4", "--recipe", "nope"], 2, "no recipe 'nope'"),
        (("bad.yaml", b"render: [x\n"), ["s.txt", "--say", "-o", "o.mp4", "--recipe", "./bad.yaml"], 2, "does not parse"),
        (None, ["s.txt", "--say", "-o", "o.mp4", "render.sise=3"], 2, "unknown recipe key 'render.sise'"),
        (None, ["s.txt", "--say", "-o", "o.mp4", "--size", "7"], 2, "--size 7 must be"),
        (None, ["s.txt", "--say", "-o", "o.mp4", "--from", "paint"], 2, "unknown stage 'paint'"),
    ],
)
def test_bad_input(work, setup, args, code, fragment):
    if setup:
        _write_bytes(work / setup[0], setup[1])
    proc = run(["render", *args], work)
    assert_one_line_error(proc, code, fragment)
    assert not list(work.glob("*.mp4")) and not list(work.glob("*.srt"))


def test_portrait_without_a_face(work):
    import cv2

    rng = np.random.default_rng(0)
    cv2.imwrite(str(work / "noise.png"), rng.integers(0, 255, (300, 300, 3), dtype=np.uint8))
    proc = run(["render", "s.txt", "--say", "-o", "o.mp4", "--portrait", "noise.png"], work)
    assert_one_line_error(proc, 2, "face")
    assert not (work / "o.mp4").exists()
    # It failed before any speech was made.
    assert not list(work.glob(".talkgen/jobs/*/speech.wav"))


@pytest.mark.parametrize("env, fragment", [({"TALKGEN_FFMPEG": "/nonexistent/ffmpeg"}, "not found: install ffmpeg")])
def test_missing_ffmpeg(work, env, fragment):
    proc = run(["render", "s.txt", "--say", "-o", "o.mp4"], work, env)
    assert_one_line_error(proc, 1, fragment)


def test_ffmpeg_without_encoders(work):
    fake = work / "ffmpeg"
    fake.write_text("#!/bin/sh\necho ' V..... mpeg4  MPEG-4'\n")
    fake.chmod(0o755)
    proc = run(["render", "s.txt", "--say", "-o", "o.mp4"], work, {"TALKGEN_FFMPEG": str(fake)})
    assert_one_line_error(proc, 1, "lacks the libx264 and aac encoder")


@pytest.mark.slow
def test_cp1252_script_renders(work):
    (work / "c.txt").write_bytes("Caf\xe9 cr\xe8me, \x93quoted\x94 \x97 2 euros.".encode("latin-1"))
    proc = run(["render", "c.txt", "--say", "-o", "c.mp4", "--size", "64", "-q"], work)
    assert proc.returncode == 0, proc.stderr
    assert "Café crème" in (work / "c.srt").read_text()


@pytest.mark.slow
def test_portrait_and_size(work, tmp_path):
    import cv2
    import skimage.data

    # The astronaut moved and padded, saved as JPEG without a landmarks file: the finder must locate the face.
    img = cv2.copyMakeBorder(skimage.data.astronaut(), 40, 0, 0, 120, cv2.BORDER_REPLICATE)
    cv2.imwrite(str(work / "me.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    proc = run(["render", "s.txt", "--say", "--portrait", "me.jpg", "--size", "1024", "-o", "me.mp4", "-q"], work)
    assert proc.returncode == 0, proc.stderr
    v = media.probe(work / "me.mp4")["streams"][0]
    assert (v["width"], v["height"]) == (1024, 1024)
    report = json.loads((work / "me.report.json").read_text())
    assert report["output"]["width"] == 1024


def test_recipes_lists_one_line_each(tmp_path):
    proc = run(["recipes"], tmp_path)
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("cpu ") for line in lines)
    assert all(len(line.split(None, 1)) == 2 for line in lines)


NARROW = {"COLUMNS": "60", "FORCE_COLOR": "1"}  # what rich would fold a table to, and its colour forced on


def test_weights_list_piped_is_one_whole_row_per_model(tmp_path):
    from talkgen.weights import manifest

    proc = run(["weights", "list"], tmp_path, env=NARROW)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split("\t") == ["model", "kind", "source", "size", "licence", "present", "recipes"]
    assert all(len(line.split("\t")) == 7 for line in lines) and "\x1b" not in proc.stdout
    for name, model in manifest().items():  # `grep NAME` finds the model's whole row
        (row,) = [line for line in lines if name in line.split("\t")[0]]
        assert row.split("\t")[:3] == [name, model.kind, model.source]


def test_recipes_json_and_piped_lines(tmp_path):
    from talkgen.recipe import list_recipes

    listed = json.loads(run(["recipes", "--json"], tmp_path).stdout)
    assert listed == [{"name": n, "description": d} for n, d in list_recipes()]
    lines = run(["recipes"], tmp_path, env=NARROW).stdout.splitlines()
    assert [line.split(None, 1) for line in lines] == [[r["name"], r["description"]] for r in listed]


def test_doctor_piped_keeps_each_check_on_one_line(tmp_path):
    checks = json.loads(run(["doctor", "--json"], tmp_path).stdout)["checks"]
    lines = run(["doctor"], tmp_path, env=NARROW).stdout.splitlines()
    assert len(lines) == len(checks)
    for line, c in zip(lines, checks):
        assert line.split()[:2] == [c["status"], c["name"].split()[0]] and c["detail"] in line


@pytest.mark.slow
def test_render_summary_piped_is_whole_rows_and_json_is_the_report(work):
    proc = run(["render", "s.txt", "--say", "-o", "o.mp4", "--size", "64", "--json"], work, env=NARROW)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads((work / "o.report.json").read_text())
    lines = proc.stderr.splitlines()
    head = lines.index("stage\tcache\ttime\tx realtime\tengine\tdevice")
    assert lines[head - 1].startswith("talkgen render (")
    rows = [line.split("\t") for line in lines[head + 1 : head + 6]]
    assert [r[0] for r in rows] == ["speak", "plan", "render", "assemble", "total"]
    assert all(len(r) == 6 for r in rows) and rows[2][4] == "puppet"
    assert any(line.startswith("talkgen check: sound") for line in lines)


def test_help_is_light(tmp_path):
    code = ("import sys, talkgen.cli; print(sorted(m for m in ('torch', 'numpy', 'cv2', 'onnxruntime', 'piper', 'fastapi', 'uvicorn', "
            "'starlette', 'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    proc = run(["--help"], tmp_path)
    assert proc.returncode == 0 and "render" in proc.stdout
