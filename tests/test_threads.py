"""The OpenMP wait policy core sets before torch loads (core/threads.py): a short bounded spin, sleeping at once
in a Space, and a user's own setting untouched."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from core.threads import SPIN_COUNT, wait_policy
from tests.paths import REPO as ROOT


def test_the_rule():
    assert wait_policy({}) == {"GOMP_SPINCOUNT": SPIN_COUNT}
    assert wait_policy({"SPACE_ID": "user/studio"}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert wait_policy({"OMP_WAIT_POLICY": "ACTIVE"}) == {}
    assert wait_policy({"GOMP_SPINCOUNT": "0", "SPACE_ID": "user/studio"}) == {}


def _openmp_env_after_import(env: dict[str, str]) -> dict[str, str]:
    """`import core` then torch in a fresh process: the OpenMP variables torch's OpenMP was loaded with."""
    code = ("import json, os, core, torch; torch.ones(2).sum(); "
            "print(json.dumps({k: v for k, v in os.environ.items() if k in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')}))")
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "SPACE_ID")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_core_sets_it_before_torch_and_keeps_the_users():
    assert _openmp_env_after_import({}) == {"GOMP_SPINCOUNT": SPIN_COUNT}
    assert _openmp_env_after_import({"SPACE_ID": "user/studio"}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert _openmp_env_after_import({"OMP_WAIT_POLICY": "ACTIVE"}) == {"OMP_WAIT_POLICY": "ACTIVE"}
