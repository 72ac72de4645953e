"""Memory a finished job freed, handed back to the system between a warm worker's jobs (placement.trim_heap)."""

import sys

import pytest

from talkgen.placement import trim_heap


def _rss_mib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_memory_a_job_freed_goes_back_to_the_system():
    """What a warm worker's job freed in pieces stays in glibc's heap (its pages between blocks
    still held are not returned) until trim_heap hands it back."""
    blocks = [bytearray(4096) for _ in range(60_000)]  # 240 MB from malloc (beyond Python's small-object pools)
    kept = blocks[::64]  # one block in 64 still held: the heap cannot shrink from its top
    del blocks
    before = _rss_mib()
    assert trim_heap()
    assert before - _rss_mib() > 150, (before, _rss_mib())
    assert len(kept) == 938
