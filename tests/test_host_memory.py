"""A CPU trainer keeps freed memory for its next step (core/training/host_memory.py): a large tensor freed and
made again costs no fresh page faults, where glibc's default gives its pages back and faults them in again."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.paths import REPO

CHILD = r"""
import json, resource, sys, torch
from core.training.host_memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
def faults_of_a_fresh_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(64 * 2 ** 20 // 4)  # 64 MB: over glibc's mmap threshold
    del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_a_fresh_tensor()
print(json.dumps({"kept": kept, "faults": min(faults_of_a_fresh_tensor() for _ in range(3))}))
"""


def _faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_memory_is_reused_without_page_faults():
    pages = 64 * 2 ** 20 // 4096
    default, kept = _faults("default"), _faults("keep")
    assert not default["kept"] and default["faults"] > pages // 2  # every page of each fresh tensor again
    assert kept["kept"] and kept["faults"] < pages // 20
