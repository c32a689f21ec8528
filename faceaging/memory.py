"""Keeping a long-running server's memory flat.

glibc's malloc gives each thread that allocates its own arena (up to eight per core) and keeps freed
blocks there, so torch's worker threads make a server's resident memory grow with the core count
and with every photo it has seen. Two arenas and a trim after each request keep it near its
working set: the live hostile-corpus test peaked at 1,628 MB with 8 torch threads before, 1,228 MB after.
Elsewhere (macOS, musl) both calls do nothing.
"""

from __future__ import annotations

import ctypes
import functools
import re
import sys

_M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h
_MADV_PAGEOUT = 21  # madvise advice number, from Linux's mman-common.h (Linux 5.4 and later)
# Shared libraries that only a GPU runs: CUDA, cuBLAS, cuDNN, NCCL... inside PyPI's torch wheel.
_GPU_LIBRARY = re.compile(r"/(nvidia/|cuda/bindings/|triton/|torch/lib/lib[a-z0-9_]*cuda)[^ ]*\.so")


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (musl has no malloc_trim: treat it as "not glibc")
    except (OSError, AttributeError):
        return None
    return libc


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas; call it before worker threads start. True when it took effect."""
    libc = _glibc()
    return bool(libc and libc.mallopt(_M_ARENA_MAX, arenas))


def release_freed_memory() -> bool:
    """Hand memory that malloc holds but no longer uses back to the OS. True when some was released."""
    libc = _glibc()
    return bool(libc and libc.malloc_trim(0))


def release_gpu_libraries() -> int:
    """Page out this process's resident pages of GPU-only libraries; call it once the models are
    loaded on a CPU. PyPI's torch wheel links them in whole (libcublasLt, libnvrtc, libtorch_cuda...):
    `import torch` leaves 140-160 MB of their code resident that a CPU never runs, and up to twice
    that on a machine that has just installed them (their files still in the page cache). The pages
    are clean copies of the files: paged out, they come back only if touched. Returns how many
    mappings were paged out (0 where Linux or its MADV_PAGEOUT is missing)."""
    libc = _glibc()
    if libc is None:
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    paged = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) > 5 and _GPU_LIBRARY.search(fields[5]):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                paged += libc.madvise(start, end - start, _MADV_PAGEOUT) == 0
    return paged
