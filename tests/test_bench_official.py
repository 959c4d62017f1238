"""bench/model.py against the official code: the official step starts from our weights and targets, and the
loss it is compared on does not disturb the step the trees compare."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.paths import TINY_CKPT, bench_script


@pytest.fixture(scope="module")
def bench():
    return bench_script("model")


def test_the_official_step_gets_the_official_key_set_and_the_train_childs_targets(bench, tmp_path):
    config = TINY_CKPT / "config.yaml"
    path = bench.official_state(config, 2, 12, tmp_path / "state.safetensors")
    state = load_file(str(path))
    targets = state.pop("bench.targets")
    # What the official code loads: the key set and shapes of an official checkpoint (model.pt, 'audiolm.' keys).
    official = torch.load(TINY_CKPT / "model.pt", weights_only=True)
    assert {k: tuple(v.shape) for k, v in state.items()} == \
        {k.removeprefix("audiolm."): tuple(v.shape) for k, v in official.items()}
    model, expected = bench.train_inputs("cpu", config, 2, 12)
    assert torch.equal(targets, expected)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert int((targets == 16384).sum()) == 2 * 3  # each song's EOS at frame 11, in every stream


def test_the_loss_without_dropout_leaves_the_compared_first_step_alone(bench, monkeypatch):
    monkeypatch.setenv("BENCH_NO_HOST_MEMORY", "1")  # a test session keeps the allocator's defaults
    config = TINY_CKPT / "config.yaml"
    plain = bench.child_train("ours", "cpu", "fp32", False, 1, 2, 12, config, 1)
    monkeypatch.setenv("BENCH_LOSS_NODROP", "1")
    compared = bench.child_train("ours", "cpu", "fp32", False, 1, 2, 12, config, 1)
    assert plain["loss_nodrop"] is None and compared["loss_nodrop"] is not None
    assert compared["loss0"] == plain["loss0"]  # the dropout generator was put back
    model, targets = bench.train_inputs("cpu", config, 2, 12)
    model.train()
    model.condition_dropout.cfg_p, model.condition_dropout.attribute_p = 0.0, {}
    with torch.no_grad():
        loss = model.compute_loss(targets, [bench.LYRICS] * 2, [bench.DESC] * 2)[0].mean().item()
    assert compared["loss_nodrop"] == pytest.approx(loss, rel=1e-6)
    assert compared["loss_nodrop"] != pytest.approx(plain["loss0"], rel=1e-6)  # the compared step drops some


def test_the_report_says_whether_the_official_loss_is_ours(capsys):
    official = bench_script("official")
    runs = {"official": [{"step_s": 20.0, "loss_nodrop": 9.906876, "peak_memory_mb": 11879.0}],
            "ours": [{"step_s": 10.0, "loss_nodrop": 9.906876}], "baseline": [{"step_s": 16.0}]}
    official.report(runs, 5.0)
    out = capsys.readouterr().out
    assert "20.00 s, 25.0% of the fp32 peak" in out and "ours 2.00x it, the baseline 1.25x" in out
    assert "(the same)" in out and "WARNING" not in out
    runs["ours"][0]["loss_nodrop"] = 9.95
    official.report(runs, 5.0)
    assert "WARNING: loss of the same weights" in capsys.readouterr().out
    official.report_generation({"official": [{"frames_per_s": 10.0, "frames_per_cpu_s": 5.0}],
                                "ours": [{"frames_per_s": 25.0, "frames_per_cpu_s": 12.5}],
                                "baseline": [{"frames_per_s": 10.5, "frames_per_cpu_s": 6.0}]})
    out = capsys.readouterr().out
    assert "10.00 frames/s, per CPU second 5.00; ours 2.50x it (2.50x per CPU second), the baseline 1.05x" in out
