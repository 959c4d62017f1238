"""A CPU trainer keeps freed memory for its next step (core/training/host_memory.py): a large tensor freed stays
in the allocator's heap, ready for the next one, where glibc's default gives it back to the system at once."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.paths import REPO

CHILD = r"""
import ctypes, json, sys, torch
from core.training.host_memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
x = torch.ones(64 * 2 ** 20 // 4)  # 64 MB: over glibc's mmap threshold
during = libc.mallinfo2()
del x
after = libc.mallinfo2()
print(json.dumps({"kept": kept, "mmapped_during": during.hblkhd, "free_in_heap_after": after.fordblks}))
"""


def _child(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_freed_large_tensor_stays_in_the_heap():
    mb64 = 64 * 2 ** 20
    default, kept = _child("default"), _child("keep")
    # glibc's default: its own mmap, given back when freed
    assert not default["kept"] and default["mmapped_during"] >= mb64 and default["free_in_heap_after"] < mb64
    # kept: served from the heap and left there for the next step
    assert kept["kept"] and kept["mmapped_during"] < mb64 and kept["free_in_heap_after"] >= mb64
