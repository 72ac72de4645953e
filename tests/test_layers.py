"""The import rules between talkgen's layers, read from the source with `ast`.

Layers, from the top:

    4. the command line, chat and the server: talkgen.cli, talkgen.chat, talkgen.server,
       talkgen.progress (the CLI's progress display), talkgen.__main__ and the package's own
       talkgen/__init__.py (its render() and batch() are the library face of the CLI)
    3. the job runners: talkgen.sequencer (a job's stages), talkgen.pipeline (a render job around
       it), talkgen.preflight, talkgen.batching, talkgen.holder, talkgen.doctor
    2. the stages: talkgen.stages
    1. everything else: the engines, the rank code (talkgen.ranks), media, the chunk store
       (talkgen.chunks, talkgen.chunk_writer), the job directory, the speech track, recipes,
       check, memory and the small utilities. A new module lands here unless it is named
       above, so an upward import in it fails this test until it is placed.

A module imports only from its own layer or below; every import counts, those inside
functions and under TYPE_CHECKING included, since a lazy import is still a dependency.

torch.distributed is imported only in talkgen.ranks (a module-level import of it once took
a multi-service GPU stack down at start-up); a back end that needs a process group or a
collective asks talkgen.ranks.group or talkgen.ranks.collectives for it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "talkgen"

LAYERS = {
    4: ("talkgen", "talkgen.__main__", "talkgen.cli", "talkgen.chat", "talkgen.progress", "talkgen.server"),
    3: ("talkgen.sequencer", "talkgen.pipeline", "talkgen.preflight", "talkgen.batching", "talkgen.holder", "talkgen.doctor"),
    2: ("talkgen.stages",),
}
NAMES = {4: "the CLI, chat and the server", 3: "the job runners", 2: "the stages", 1: "the engines, ranks, media, chunk store and utilities"}


def layer(module: str) -> int:
    for level, prefixes in LAYERS.items():
        for prefix in prefixes:
            # "talkgen" names the package's own __init__ only: every module is under it.
            if module == prefix or (prefix != "talkgen" and module.startswith(prefix + ".")):
                return level
    return 1


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, wherever it is: relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from talkgen import media` imports the module talkgen.media, not the package's __init__.
            found += [(node.lineno, f"{module}.{alias.name}" if _is_module(f"{module}.{alias.name}") else module)
                      for alias in node.names]
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_layers_cover_the_package():
    """The rules would pass vacuously if the walk found nothing or the layer names went stale."""
    names = {module_name(p) for p in MODULES}
    assert {"talkgen.cli", "talkgen.pipeline", "talkgen.stages.render", "talkgen.engines.puppet", "talkgen.chunks"} <= names
    for prefixes in LAYERS.values():
        for prefix in prefixes:
            assert prefix in names or any(n.startswith(prefix + ".") for n in names), f"{prefix} is not in the package"
    assert imports(PACKAGE / "engines" / "puppet.py"), "the import walk found nothing"


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in MODULES:
        name = module_name(path)
        mine = layer(name)
        upward += [f"{name} (layer {mine}, {NAMES[mine]}) line {line}: {target} ({NAMES[layer(target)]})"
                   for line, target in imports(path) if target.startswith("talkgen") and layer(target) > mine]
    assert not upward, "imports from a layer above:\n" + "\n".join(upward)


def test_torch_distributed_is_imported_only_in_the_rank_code():
    found = [f"{module_name(path)} line {line}" for path in MODULES if not module_name(path).startswith("talkgen.ranks")
             for line, target in imports(path) if target == "torch.distributed" or target.startswith("torch.distributed.")]
    assert not found, "torch.distributed outside talkgen.ranks (use talkgen.ranks.group or .collectives): " + ", ".join(found)


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The walk finds imports inside functions and relative ones, and the rule flags them."""
    fake = tmp_path / "talkgen"
    (fake / "engines").mkdir(parents=True)
    source = "def f():\n    from ..stages import plan\n    import talkgen.pipeline\n    from talkgen import cli\n"
    (fake / "engines" / "bad.py").write_text(source)
    for name in ("stages/plan.py", "pipeline.py", "cli.py"):
        (fake / name).parent.mkdir(exist_ok=True)
        (fake / name).write_text("")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert [target for _, target in imports(fake / "engines" / "bad.py")] == ["talkgen.stages.plan", "talkgen.pipeline", "talkgen.cli"]
    assert [layer(t) for t in ("talkgen.stages.plan", "talkgen.pipeline", "talkgen.cli", "talkgen.chunks")] == [2, 3, 4, 1]
