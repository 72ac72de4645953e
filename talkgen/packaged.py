"""What ships inside the package, in talkgen/assets: the recipes, the weights manifest and the
default portrait.

They are package data, found through importlib.resources, so an installed wheel finds them
just as a checkout does (they once sat beside the package and a wheel had none of them).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from talkgen.errors import TalkgenError


def asset(*parts: str) -> Path:
    """The path of a file or folder in talkgen/assets."""
    ref = resources.files("talkgen").joinpath("assets", *parts)
    if not isinstance(ref, Path):
        # pip always installs packages as files; only a zip import gets here.
        raise TalkgenError(f"talkgen's assets are not files on disk ({ref}): install talkgen with pip, not as a zip")
    return ref


def recipes_dir() -> Path:
    return asset("recipes")


def manifest() -> Path:
    return asset("manifest.yaml")


def default_portrait() -> Path:
    return asset("portrait.png")
