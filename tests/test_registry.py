"""The engine registry: every back end declares all of itself, every recipe's engines resolve,
and looking back ends up imports no heavy package and no back end that was not asked for."""

import dataclasses
import importlib
import json
import subprocess
import sys

import pytest
from conftest import ROOT

from talkgen.engines.avatar import AvatarParts
from talkgen.engines.registry import KINDS, LISTED, SECTIONS, Backend, backend, chosen, names
from talkgen.engines.tts import tts_identity
from talkgen.errors import UsageError
from talkgen.packaged import recipes_dir
from talkgen.recipe import load_recipe

HEAVY = ("torch", "transformers", "ray", "onnxruntime", "faster_whisper", "whisper", "piper", "f5_tts", "vocos", "cv2")
OPTIONAL = ("check", "memory", "formats", "doctor")  # None: the back end has none of it


def _modules_after(code: str) -> dict:
    """What a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.splitlines()[-1])
    return {"heavy": sorted(m for m in loaded if m.split(".")[0] in HEAVY),
            "backends": sorted(m for m in loaded if m in {module for _, _, module in LISTED})}


def test_a_declaration_must_name_every_field():
    for cls in (Backend, AvatarParts):
        defaulted = [f.name for f in dataclasses.fields(cls)
                     if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
        assert defaulted == [], f"{cls.__name__} lets a back end leave out {defaulted}"


@pytest.mark.parametrize("kind, name, module", LISTED, ids=[name for _, name, _ in LISTED])
def test_every_listed_back_end_declares_all_of_itself(kind, name, module):
    found = importlib.import_module(module).BACKEND
    assert isinstance(found, Backend) and backend(kind, name) is found
    assert found.kind == kind in KINDS and name in found.names
    assert all(n in names(kind) for n in found.names), "each of its names has its line in LISTED"
    assert callable(found.identity) and callable(found.load)
    for field in OPTIONAL:
        assert getattr(found, field) is None or callable(getattr(found, field)), field
    if kind == "avatar":
        parts = found.avatar
        assert isinstance(parts, AvatarParts) and callable(parts.traits) and isinstance(parts.ranks, bool)
        assert all(f is None or callable(f) for f in (parts.preflight, parts.rank_settings))
    else:
        assert found.avatar is None


def test_names_are_unique_within_a_kind():
    pairs = [(kind, name) for kind, name, _ in LISTED]
    assert len(pairs) == len(set(pairs))


@pytest.mark.parametrize("recipe", sorted(p.stem for p in recipes_dir().glob("*.yaml")))
def test_every_recipe_engine_resolves(recipe):
    r = load_recipe(recipe)
    for kind in KINDS:
        found, config = chosen(r, kind)
        assert config is getattr(r, SECTIONS[kind]) and config.engine in found.names


def test_an_unknown_engine_is_one_line_naming_those_there_are():
    with pytest.raises(UsageError, match=r"^unknown render\.engine 'sadtalker': the available engines are puppet, tp-test, liveavatar$"):
        backend("avatar", "sadtalker")
    with pytest.raises(UsageError, match=r"^unknown tts\.engine 'espeak': the available engines are piper, f5-tts$"):
        tts_identity(load_recipe("cpu", ["tts.engine=espeak"]).tts)


def test_the_registry_and_every_declaration_import_nothing_heavy():
    found = _modules_after("from talkgen.engines.registry import all_backends\nall_backends()")
    assert found["heavy"] == [] and len(found["backends"]) == len(LISTED)
    assert _modules_after("import talkgen.engines.registry")["backends"] == []  # nothing before it is asked


@pytest.mark.parametrize("name", ["tp-test", "liveavatar"])
def test_a_rank_back_end_is_found_without_importing_the_others(name):
    """The avatar ranks look their back end up, and may run where the others cannot import."""
    found = _modules_after(f"from talkgen.engines.avatar import load_avatar\n"
                           f"from talkgen.engines.registry import backend\nbackend('avatar', {name!r})")
    assert found["backends"] == [dict((n, m) for _, n, m in LISTED)[name]] and found["heavy"] == []
