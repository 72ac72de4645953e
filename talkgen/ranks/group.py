"""A process group for back ends that call torch.distributed even when they run alone."""

from __future__ import annotations

from pathlib import Path


def ensure_single_process_group(tmp_dir: Path) -> bool:
    """Start a 1-rank gloo group in this process unless one is already running.

    LiveAvatar's single-GPU pipeline asks torch.distributed for its rank at every block, as
    its own launcher always runs under torchrun; talkgen renders one GPU in its own process
    (and chat does too), where nothing has started a group. A file store in `tmp_dir` needs
    no port, so two renders on one machine cannot collide. Returns whether it started one.
    """
    import torch.distributed as dist

    from talkgen.errors import TalkgenError

    if not dist.is_available():
        raise TalkgenError("this torch is built without torch.distributed, which LiveAvatar calls even on one GPU: "
                           "install the torch that ./install.sh pins")
    if dist.is_initialized():
        return False
    tmp_dir.mkdir(parents=True, exist_ok=True)
    store = tmp_dir / "process-group"
    store.unlink(missing_ok=True)  # a store left by an earlier group would be joined, not started afresh
    try:
        dist.init_process_group("gloo", init_method=store.resolve().as_uri(), rank=0, world_size=1)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TalkgenError(f"the one-rank gloo process group LiveAvatar needs on one GPU did not start ({first}): "
                           "set render.launcher=torchrun to render in a torchrun rank instead") from None
    return True
