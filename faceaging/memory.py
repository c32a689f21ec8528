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
_MADV_DONTNEED = 4  # madvise advice number, from Linux's mman-common.h
_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")  # a mapping's first line in /proc/PID/smaps
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
    """Drop this process's resident pages of GPU-only libraries; call it once the models are loaded
    on a CPU. PyPI's torch wheel links them in whole (libcublasLt, libnvrtc, libtorch_cuda...):
    `import torch` leaves 140-160 MB of their code resident that a CPU never runs, and about twice
    that on a machine that has just installed them (the kernel maps more of a file that is still in
    its page cache). Only read-only mappings that hold no private (relocated) pages are dropped:
    their pages are the files' own, so unmapping them (MADV_DONTNEED) loses nothing, and a page
    that is touched again is mapped back from the file. Returns how many mappings were dropped
    (0 where there is no Linux /proc or glibc)."""
    libc = _glibc()
    if libc is None:
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    dropped, mapping = 0, None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if _MAPPING.match(line):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                wanted = len(fields) > 5 and "w" not in fields[1] and _GPU_LIBRARY.search(fields[5])
                mapping = (start, end) if wanted else None
            elif mapping and fields[0] == "Anonymous:":
                if fields[1] == "0":  # nothing private in it: its pages are all the file's
                    dropped += libc.madvise(mapping[0], mapping[1] - mapping[0], _MADV_DONTNEED) == 0
                mapping = None
    return dropped
