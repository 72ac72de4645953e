"""The avatar's own Python environment, set once rather than on every command.

A back end such as LiveAvatar cannot share talkgen's Python (its requirements conflict with
talkgen's), so its ranks run under the interpreter of an environment of its own: the
recipe's render.python when a recipe or a command names one, else the environment variable
TALKGEN_<ENGINE>_PYTHON (TALKGEN_LIVEAVATAR_PYTHON), else the user's config file, which
`talkgen doctor --save-avatar-python` writes once that Python has passed its checks:

    # ~/.config/talkgen/config.yaml ($TALKGEN_CONFIG, or under $XDG_CONFIG_HOME)
    avatar_python:
      liveavatar: /opt/envs/liveavatar/bin/python

Read in talkgen's own process only, when a recipe is loaded: the ranks get render.python
already filled in, and need neither the file nor PyYAML.
"""

from __future__ import annotations

import os
from pathlib import Path

from talkgen.errors import UsageError

SECTION = "avatar_python"


def env_var(engine: str) -> str:
    return "TALKGEN_" + engine.upper().replace("-", "_") + "_PYTHON"


def config_path() -> Path:
    if os.environ.get("TALKGEN_CONFIG"):
        return Path(os.environ["TALKGEN_CONFIG"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "talkgen" / "config.yaml"


def _read() -> dict:
    import yaml

    path = config_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"talkgen's config {path} does not read ({first}): fix it or remove it") from None
    if not isinstance(data, dict) or not isinstance(data.get(SECTION, {}), dict):
        raise UsageError(f"talkgen's config {path} must be a mapping with '{SECTION}' mapping engines to Pythons: fix it or remove it")
    return data


def avatar_python(engine: str) -> tuple[str, str]:
    """(the Python set for `engine`'s ranks, where it was set), or ("", "") for none."""
    if os.environ.get(env_var(engine)):
        return os.environ[env_var(engine)], env_var(engine)
    saved = _read().get(SECTION, {}).get(engine)
    return (str(saved), str(config_path())) if saved else ("", "")


def save_avatar_python(engine: str, python: str) -> Path:
    """Remember `python` for `engine`'s ranks in the user's config; the file written."""
    import yaml

    from talkgen.job import atomic_path

    data = _read()
    data.setdefault(SECTION, {})[engine] = os.path.abspath(os.path.expanduser(python))
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")
    return path


def how_to_set(engine: str) -> str:
    """The words of a fix: how to point talkgen at `engine`'s environment once."""
    return (f"make it as docs/production.md says, then point talkgen at it once: export {env_var(engine)}=/path/to/env/bin/python, "
            "or save it with talkgen doctor --recipe RECIPE --save-avatar-python /path/to/env/bin/python")
