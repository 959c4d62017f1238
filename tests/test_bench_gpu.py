"""bench/gpu.py: its base/large models come from the same config code as real checkpoints."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.model import LeLM
from tests.paths import bench_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_bench():
    return bench_script("gpu")


# Released sizes and parameter totals (../shared/reference/lelm.md 1.3 and 2.4).
@pytest.mark.parametrize("size,dims,frames,params_b", [
    ("base", (1536, 8960, 12, 28, 12), 6750, 2.830),
    ("large", (2048, 11008, 16, 36, 12), 6750, 5.122),
])
def test_size_configs_read_by_the_checkpoint_config_code(gpu_bench, tmp_path, size, dims, frames, params_b):
    oc = gpu_bench.size_config(size, folder=tmp_path)
    assert (oc.dim, oc.intermediate_size, oc.num_heads, oc.num_layers, oc.num_layers_sub) == dims
    assert oc.delays == [0, 250, 250] and oc.prompt_max_len == 252 and oc.lyric_max_len == 600
    assert oc.desc_max_len == 100 and oc.max_frames == frames
    with torch.device("meta"):  # the real layout, no memory
        model = LeLM.build(oc, gpu_bench.SIZES[size]["version"])
    assert round(model.num_parameters() / 1e9, 3) == params_b


def test_exits_clearly_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py")], capture_output=True, text=True)
    assert out.returncode == 2
    assert "needs a CUDA GPU" in out.stderr and "nothing was measured" in out.stderr
