"""DPO runs through core.train on the reduced demo model (tests/test_train.py's "demo-small") and the
demo codec, on the CPU.

Synthetic preference pairs: an 8 s synthetic song encoded with the demo codec; pair i = (chosen:
frames [10i, 10i+10), rejected: the same frames with the vocal and accompaniment streams swapped), one
prompt (its own lyrics) per pair, 20 pairs. Both sides hold the same codes at the same level: what the
model must learn is which stream is the vocal and which the accompaniment, not loudness (an earlier
version made the rejected side 26 dB quieter, which the level code alone gives away). dpo.val_fraction
0.3 holds out the pairs of the prompts the split's hash picks (5 of 20 here): windows the run never
trains on. Before training the policy equals the reference (LoRA B = 0), so every held-out margin is 0
and the accuracy (margin > 0) is 0; chance is 0.5. The test asks for held-out accuracy >= 0.9 and a mean
margin > 0.3 after 6 steps (measured: 1.0 and 0.51).

Resume: the uninterrupted run and the resumed one are both launched as the studio launches them
(`runs.start_run`: like with like, the same threads and CPU kernels); the second is SIGKILLed after
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
    n = a.shape[-1] // W
    windows = [a[:, i * W:(i + 1) * W] for i in range(n)]
    return [{"prompt_id": f"window-{i:02d}", "lyrics": f"[verse] window {i} of the night.we sing along",
             "description": "female, pop, piano", "chosen": w.tolist(), "rejected": w[[0, 2, 1]].tolist(),
             "chosen_seed": 1, "rejected_seed": 2, "model_id": "synthetic"} for i, w in enumerate(windows)]


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
    out = {"lora": launch(ws, dpo_config(ws, ckpt), "dpo-lora")}   # launched as the resumed run is
    finish(out["lora"])
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


def test_dpo_raises_held_out_preference_accuracy(dpo_env, dpo_runs):
    from core.codec.demo import DemoCodec
    from core.preference import split_prompts
    from core.preference.pairs import prompt_key

    keys = [prompt_key(p["lyrics"], p["description"]) for p in synthetic_pairs(DemoCodec())]
    run = dpo_runs["lora"]
    evals = events(run, "eval")
    assert [e["step"] for e in evals] == [SAVE_EVERY, STEPS]
    last = evals[-1]
    print("held-out:", {k: round(v, 4) for k, v in last.items() if k.startswith("val_")})
    assert last["pairs"] == len(split_prompts(keys, 0.3, 7)) == 5
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
