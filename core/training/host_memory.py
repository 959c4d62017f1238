"""A CPU trainer keeps the memory it frees for its next step instead of giving it back to the system.

glibc serves every allocation over 32 MB with its own mmap and returns it with munmap when freed, so each
training step's large tensors (activations; the dense gradient of each 151,659-row text table, 621 MB at
D1024) come back as fresh pages that the kernel faults in and zeroes again. In a bf16 D1024 step on a 2-core VM
that cost ~20 % of the step (bench/README.md). With mmap off for the heap (M_MMAP_MAX = 0) and the heap's top
trimmed only past 2 GB (M_TRIM_THRESHOLD), freed blocks are reused by the next step: the resident size stays at
a step's peak between steps, as it is during one. glibc only (Linux); elsewhere nothing changes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
TRIM_THRESHOLD = 2 ** 31 - 1
KEPT = False  # set in this process by keep_freed_memory (the trainer's start line says so)


def keep_freed_memory() -> bool:
    """-> whether the allocator now keeps freed memory (glibc found and both settings taken)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    global KEPT
    KEPT = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return KEPT


def for_cpu_trainer() -> bool:
    """In a process that trains on the CPU (a launched rank, the `train` command): keep freed memory. Not in
    a process that trains alongside other work (the studio server, a test session): it would keep their peaks."""
    import torch

    return False if torch.cuda.is_available() else keep_freed_memory()
