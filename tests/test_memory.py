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


_GPU_PAGES = """
import json, re
import torch
from faceaging.memory import _GPU_LIBRARY, release_gpu_libraries

def resident_mb():
    total, current = 0, ""
    for line in open("/proc/self/smaps"):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            fields = line.split()
            current = fields[5] if len(fields) > 5 else ""
        elif line.startswith("Rss:") and _GPU_LIBRARY.search(current):
            total += int(line.split()[1])
    return total / 1024

conv = torch.nn.Conv2d(3, 8, 3)
x = torch.randn(2, 3, 32, 32)
with torch.no_grad():
    before_out = conv(x)
    before = resident_mb()
    paged = release_gpu_libraries()
    after = resident_mb()
    after_out = conv(x)
print(json.dumps({"before": before, "after": after, "paged": paged, "same": bool(torch.equal(before_out, after_out))}))
"""


def test_a_cpu_server_pages_out_the_gpu_libraries_and_torch_still_runs():
    """torch's wheel links CUDA's libraries in whole; a CPU server hands their resident pages back
    (MADV_DONTNEED on the files' own pages) and computes the same as before."""
    import json
    import subprocess

    out = subprocess.run([sys.executable, "-c", _GPU_PAGES], capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    if figures["before"] < 5:
        pytest.skip("this torch build maps no GPU libraries")
    assert figures["paged"] > 0
    assert figures["after"] < 0.25 * figures["before"], figures
    assert figures["same"]
