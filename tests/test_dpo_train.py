"""DPO runs through core.train on the reduced demo model (tests/test_train.py's "demo-small") and the
demo codec, on the CPU.

Synthetic preference pairs: two 8 s synthetic songs encoded with the demo codec, A at its normal
level and B (another melody) at -26 dB; pair i = (chosen: frames [10i, 10i+10) of A, rejected: the
same frames of B), one prompt per pair, 20 pairs. dpo.val_fraction 0.3 holds out the pairs of 6
prompts: windows of the songs the run never trains on. Before training the policy equals the
reference (LoRA B = 0), so every held-out margin is 0 and the accuracy (margin > 0) is 0; chance is
0.5. The test asks for held-out accuracy >= 0.9 and a mean margin > 0.3 after 6 steps.

Resume: the same LoRA config launched as the studio launches it (`runs.start_run`), SIGKILLed after
the step-3 checkpoint and resumed: per-step losses equal the uninterrupted run's to 1e-6, as for SFT.
Full finetuning: the reference log-probs are computed once before step 1 and stored in the run.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from core.runs import store as runs
from core.config import parse_config
from tests.test_train import ENV, events, finish, launch, losses, make_small_demo, wait_step

STEPS = 6
SAVE_EVERY = 3
W = 10  # frames per pair


def synthetic_pairs(codec) -> list[dict]:
    from tests.datagen import synth_song

    a = codec.encode(torch.from_numpy(synth_song(8.0, seed=1).T.copy()))
    b = codec.encode(torch.from_numpy(synth_song(8.0, seed=2).T.copy()) * 0.05)
    n = min(a.shape[-1], b.shape[-1]) // W
    return [{"prompt_id": f"window-{i:02d}", "lyrics": "[verse] the night is young.we sing along",
             "description": "female, pop, piano", "chosen": a[:, i * W:(i + 1) * W].tolist(),
             "rejected": b[:, i * W:(i + 1) * W].tolist(), "chosen_seed": 1, "rejected_seed": 2,
             "model_id": "synthetic"} for i in range(n)]


def dpo_config(ws: Path, ckpt: Path, **training) -> dict:
    tr = {"type": "lora", "objective": "dpo", "max_steps": STEPS, "batch_size": 2, "learning_rate": 0.005,
          "warmup_steps": 0, "lr_min_ratio": 1.0, "max_frames": W, "eval_every": SAVE_EVERY,
          "save_every": SAVE_EVERY, "num_samples": 0, "seed": 7, "keep_last": 3}
    tr.update(training)
    return {"workspace": str(ws), "paths": {"base_model_path": str(ckpt)}, "training": tr,
            "lora": {"r": 8, "alpha": 16, "dropout": 0.05}, "data": {"codec": "demo"},
            "dpo": {"beta": 0.1, "val_fraction": 0.3}}


@pytest.fixture(scope="session")
def dpo_env(tmp_path_factory):
    from core.codec import get_codec
    from core.preference import PairStore, pairs_dir

    ws = tmp_path_factory.mktemp("dpows")
    ckpt = make_small_demo(ws)
    cfg = parse_config(dpo_config(ws, ckpt))
    rep = PairStore(pairs_dir(cfg)).add(synthetic_pairs(get_codec(cfg)))
    assert len(rep.added) == 20 and not rep.skipped
    return {"ws": ws, "ckpt": ckpt}


def in_process(data: dict, name: str) -> Path:
    from core.training.trainer import train

    run_dir = runs.create_run(parse_config(data), name=name)
    assert train(runs.load_run_config(run_dir), config_path=run_dir / runs.CONFIG_NAME) == "done"
    return run_dir


@pytest.fixture(scope="session")
def dpo_runs(dpo_env):
    ws, ckpt = dpo_env["ws"], dpo_env["ckpt"]
    out = {"lora": in_process(dpo_config(ws, ckpt), "dpo-lora")}
    res = launch(ws, dpo_config(ws, ckpt), "dpo-resume")
    wait_step(res, SAVE_EVERY + 1)
    runs.kill_run(res, signal.SIGKILL)
    out["crashed"] = runs.wait_for(res, statuses=("crashed",), timeout=30)["status"]
    out["killed_at"] = max(losses(res))
    runs.start_run(res, resume=True, env=ENV)
    finish(res)
    out["resume"] = res
    out["full"] = in_process(dpo_config(ws, ckpt, type="full", max_steps=1, learning_rate=1e-4), "dpo-full")
    return out


def metrics(run: Path) -> list[dict]:
    recs, _ = runs.read_metrics(run)
    return [r for r in recs if r.get("type") == "metrics"]


def test_dpo_raises_held_out_preference_accuracy(dpo_runs):
    run = dpo_runs["lora"]
    evals = events(run, "eval")
    assert [e["step"] for e in evals] == [SAVE_EVERY, STEPS]
    last = evals[-1]
    print("held-out:", {k: round(v, 4) for k, v in last.items() if k.startswith("val_")})
    assert last["pairs"] == 6
    assert last["val_reward_accuracy"] >= 0.9, last  # chance: 0.5
    assert last["val_reward_margin"] > 0.3, last
    m = metrics(run)
    assert [r["step"] for r in m] == list(range(1, STEPS + 1))
    for key in ("loss", "dpo_loss", "sft_loss", "reward_margin", "reward_accuracy", "chosen_reward",
                "rejected_reward", "lr", "grad_norm", "tokens_per_s"):
        assert key in m[-1], key
    assert m[-1]["dpo_loss"] < m[0]["dpo_loss"]
    phase = events(run, "phase")[0]
    assert phase["dataset"].endswith("pairs") and phase["mode"] == "lora"


def test_dpo_checkpoint_is_a_normal_lora_checkpoint(dpo_env, dpo_runs):
    from core.export.merge import export_checkpoint
    from core.model import LeLM

    ck = runs.latest_checkpoint(dpo_runs["lora"])
    assert (ck / "adapter_model.safetensors").is_file()
    res = export_checkpoint(ck, cfg=runs.load_run_config(dpo_runs["lora"]), overwrite=True)
    merged = LeLM.from_pretrained(res.out_dir)
    assert merged.num_parameters() == LeLM.from_pretrained(dpo_env["ckpt"]).num_parameters()


def test_dpo_resume_is_exact(dpo_runs):
    assert dpo_runs["crashed"] == "crashed" and dpo_runs["killed_at"] > SAVE_EVERY
    ref, got = losses(dpo_runs["lora"]), losses(dpo_runs["resume"])
    assert sorted(got) == sorted(ref) == list(range(1, STEPS + 1))
    diffs = {s: abs(ref[s] - got[s]) for s in ref}
    assert max(diffs.values()) <= 1e-6, diffs
    assert [e["resumed"] for e in events(dpo_runs["resume"], "phase")] == [False, True]


def test_dpo_full_finetune_uses_stored_reference(dpo_runs):
    from safetensors import safe_open

    run = dpo_runs["full"]
    path = run / "reference_logps.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        ids = json.loads(fh.metadata()["pair_ids"])
        table = fh.get_tensor("logps")
    assert len(ids) == 20 and table.shape == (20, 2) and bool(torch.isfinite(table).all())
    first = metrics(run)[0]
    # step 1 runs with the starting weights: policy == stored reference, so the margin is 0
    assert abs(first["reward_margin"]) < 1e-4 and first["dpo_loss"] == pytest.approx(0.6931, abs=1e-3)
    assert (runs.latest_checkpoint(run) / "model.pt").is_file()
    assert len(events(run, "eval")) == 1
