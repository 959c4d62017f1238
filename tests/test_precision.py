"""Mixed precision on the CPU chosen by measurement (core.training.precision).

The choice is a pure function of two cached matmul peaks, so these tests write the cache and never depend
on the CPU they run on. The tolerance test runs the tiny official checkpoint in fp32 and under the bf16
autocast that accelerate's `mixed_precision="bf16"` uses on a CPU, from the same weights and batches."""
from __future__ import annotations

import json

import pytest
import torch

from core.training import estimate, precision
from core.training.precision import ENV, choose


def _cache(path, fp32: float, bf16: float):
    path.write_text(json.dumps({estimate.machine_key("cpu", torch.float32): fp32,
                                estimate.machine_key("cpu", torch.bfloat16): bf16}), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def no_forcing(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    estimate.matmul_peak.cache_clear()


def test_auto_is_bf16_where_bf16_is_faster(tmp_path):
    c = choose("auto", device="cpu", cache_file=_cache(tmp_path / "p.json", 3.0e11, 2.4e12))
    assert c.mixed_precision == "bf16" and c.dtype == torch.bfloat16
    assert "8.0x" in c.reason


def test_auto_is_fp32_where_bf16_is_slower_or_a_near_tie(tmp_path):
    slower = choose("auto", device="cpu", cache_file=_cache(tmp_path / "a.json", 3.0e11, 1.0e11))
    tie = choose("auto", device="cpu", cache_file=_cache(tmp_path / "b.json", 3.0e11, 3.3e11))
    assert slower.mixed_precision == tie.mixed_precision == "no"
    assert slower.dtype == torch.float32 and "0.33x" in slower.reason


def test_the_config_forces_either_way(tmp_path):
    fast = _cache(tmp_path / "fast.json", 3.0e11, 2.4e12)
    slow = _cache(tmp_path / "slow.json", 3.0e11, 1.0e11)
    assert choose("no", device="cpu", cache_file=fast).mixed_precision == "no"
    assert choose("bf16", device="cpu", cache_file=slow).mixed_precision == "bf16"


def test_the_environment_forces_the_cpu_verdict(tmp_path, monkeypatch):
    fast = _cache(tmp_path / "fast.json", 3.0e11, 2.4e12)
    monkeypatch.setenv(ENV, "fp32")
    assert choose("auto", device="cpu", cache_file=fast).mixed_precision == "no"
    monkeypatch.setenv(ENV, "bf16")
    assert choose("auto", device="cpu", cache_file=None).mixed_precision == "bf16"


def test_several_processes_read_the_cache_and_never_measure(tmp_path, monkeypatch):
    def no_measuring(*a, **k):
        raise AssertionError("a rank measured")

    monkeypatch.setattr(estimate, "measure_matmul_peak", no_measuring)
    assert choose("auto", device="cpu", cache_file=tmp_path / "none.json", processes=2).mixed_precision == "no"
    fast = _cache(tmp_path / "fast.json", 3.0e11, 2.4e12)
    assert choose("auto", device="cpu", cache_file=fast, processes=2).mixed_precision == "bf16"


def test_one_process_measures_once_and_caches(tmp_path, monkeypatch):
    calls = []

    def fake(device, dtype, **k):
        calls.append(dtype)
        return 2.0e12 if dtype == torch.bfloat16 else 4.0e11

    monkeypatch.setattr(estimate, "measure_matmul_peak", fake)
    cache = tmp_path / "cache" / "peak.json"
    assert choose("auto", device="cpu", cache_file=cache).mixed_precision == "bf16"
    estimate.matmul_peak.cache_clear()
    assert choose("auto", device="cpu", cache_file=cache).mixed_precision == "bf16"
    assert calls == [torch.float32, torch.bfloat16]  # the second decision came from the file


# bf16 rounds activations to 8 bits of mantissa: the loss of the tiny checkpoint (about 9.7 nats at init)
# moves by thousandths. Measured on an AMD EPYC (AVX512-BF16): at most 0.008 per step over 6 AdamW steps; the bound leaves room
# for other CPUs' bf16 kernels.
BF16_TOLERANCE = 0.1


def test_bf16_training_stays_within_tolerance_of_fp32():
    """Six AdamW steps of the tiny checkpoint's training loss (compute_loss, as the trainer), fp32 vs bf16."""
    from core.model import build_targets
    from tests.conftest import _load_tiny

    torch.manual_seed(0)
    T, B = 40, 2
    targets = build_targets(torch.randint(0, 16384, (B, 3, T)), torch.tensor([T, T - 8]))
    lyrics = ["[verse] the city lights are calling", "[chorus] hold on"]
    descs = ["female, pop, piano", "male, rock"]

    def run(bf16: bool) -> list[float]:
        model = _load_tiny().train()
        for m in model.modules():  # dropouts off: the comparison is about precision only
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        out = []
        for _ in range(6):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                per_stream, _ = model.compute_loss(targets, lyrics, descs)
                loss = per_stream.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(loss.item())
        return out

    fp32, bf16 = run(False), run(True)
    print("fp32", fp32, "\nbf16", bf16)
    assert all(abs(a - b) <= BF16_TOLERANCE for a, b in zip(fp32, bf16)), (fp32, bf16)
    assert bf16[-1] < bf16[0]  # bf16 still trains


def test_cpu_attention_follows_the_measured_kernels(tmp_path, monkeypatch):
    """bf16 attention on a CPU: the query blocks where they measured faster than SDPA, SDPA where not (AMX);
    measured once per machine and cached beside the matmul peaks; several processes only read that cache."""
    from core.model import attention

    timings = {"blocks": (1.0, 2.0), "sdpa": (2.0, 1.0)}
    for faster, (blocks_s, sdpa_s) in timings.items():
        cache = tmp_path / f"{faster}.json"
        assert precision.cpu_attention(cache, measure=False)[0] is False  # nothing cached: SDPA
        monkeypatch.setattr(attention, "measure", lambda b=blocks_s, s=sdpa_s: (b, s))
        on, why = precision.cpu_attention(cache)
        assert on is (faster == "blocks") and ("query blocks (2.00x SDPA" in why if on else "SDPA" in why)

        def no_measuring(*a, **k):
            raise AssertionError("measured again although this machine's figures are cached")
        monkeypatch.setattr(attention, "measure", no_measuring)
        assert precision.cpu_attention(cache)[0] is on
        assert precision.cpu_attention(cache, measure=False)[0] is on
