"""The server hands freed memory back to the OS (glibc only; see faceaging/memory.py)."""

import sys
from pathlib import Path

import pytest

from faceaging.memory import limit_malloc_arenas, release_freed_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_arena_cap_is_accepted():
    assert limit_malloc_arenas(2)


def test_freed_blocks_in_the_middle_of_the_heap_go_back_to_the_os():
    # 64 KB blocks sit in the heap, below malloc's mmap threshold; the last one stays alive, so the
    # freed ones cannot simply be cut off the top of the heap: only a trim returns them.
    blocks = [b"x" * (64 * 1024) for _ in range(3000)]
    survivor = blocks[-1]
    del blocks
    before = _rss_mb()
    assert release_freed_memory()
    assert before - _rss_mb() > 100, "about 190 MB of freed blocks should have been released"
    assert survivor[:1] == b"x"
