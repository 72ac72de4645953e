"""Run under torchrun by tests/test_ranks.py: the tp-test forward pass on this rank's shard.

Rank 0 saves the full outputs (after the all-reduce) for a fixed batch of inputs and the
frames and continuity of one chunk, so the test can compare them with world size 1.
"""

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import synthetic_track  # noqa: E402

from talkgen.engines.tp_test import BANDS, STATE, TPTestAvatar  # noqa: E402
from talkgen.portrait import load_portrait  # noqa: E402
from talkgen.recipe import load_recipe  # noqa: E402


def outputs(world_size: int, rank: int, out_dir: Path) -> dict:
    recipe = load_recipe("cpu", ["render.engine=tp-test", f"render.nproc={world_size}", "render.size=64"])
    engine = TPTestAvatar(recipe.render, load_portrait(None, 64), rank=rank, world_size=world_size)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(10, BANDS + STATE, generator=gen)
    forward = torch.stack([engine.forward(row) for row in x]).numpy()
    out_dir.mkdir(parents=True, exist_ok=True)
    track = synthetic_track(out_dir, [("talk", 1.0), ("gap", 0.2), ("talk", 0.6)])
    frames = np.stack([f.copy() for f in engine.render_chunk(track, 0, 40, None)])
    return {"forward": forward, "frames": frames, "state": engine.continuity_after(40)["state"]}


if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", timeout=timedelta(seconds=30))
    result = outputs(world, rank, out_dir / f"rank{rank}")
    if rank == 0:
        np.save(out_dir / "forward.npy", result["forward"])
        np.save(out_dir / "frames.npy", result["frames"])
        (out_dir / "state.json").write_text(json.dumps(result["state"]))
    dist.destroy_process_group()
