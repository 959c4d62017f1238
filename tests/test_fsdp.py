"""Sharded training (FSDP2, torch fully_shard) on the CPU with gloo, launched the way the studio launches
it (`core.runs.store.start_run` -> `accelerate launch --config_file assets/accelerate/fsdp.yaml --num_processes 2`),
plus the launch commands and the shipped accelerate configs.

The demo-small model and the 3-song dataset of tests/test_train.py (its session fixture `env`).
Tolerances: a 2-process FSDP run (batch 1 per process) and a 1-process run (batch 2) see the same
songs and windows per step with every dropout off; their per-step losses agree to 1e-4 absolute
(float reduction order of the sharded gradient reduce-scatter). A step trained twice across a kill -9
and resume (same world size) logs the same loss to 1e-6. Logits of the gathered export and of the
1-process model after the same steps agree to 1e-3 absolute (weights differ by reduction-order noise
times the learning rate).
"""
from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from core.runs import launch
from core.runs import store as runs
from core.config import ConfigError, parse_config
from tests.test_dpo_train import dpo_env  # noqa: F401
from tests.test_train import ENV, base_config, env, finish, in_process, losses, wait_step  # noqa: F401

STEPS = 6
SAVE = 3  # the kill lands after step 4 is logged: between the step-3 and the final checkpoint
CROP = 100


def _cfg(env, procs: int, **training) -> dict:
    ws, ckpt, ds = env["ws"], env["ckpt"], str(env["dataset"])
    # a 100-frame crop: the two train songs (75..125 frames) give the ranks windows of unequal length
    dd = dict(max_steps=STEPS, dataset_dir=ds, condition_dropout=False, save_every=SAVE, batch_size=2 // procs,
              eval_every=100, keep_last=5, max_frames=CROP)
    dd.update(training)
    if procs > 1:
        dd.update(distributed="fsdp", num_processes=procs)
    data = base_config(ws, ckpt, **dd)
    data["lora"]["dropout"] = 0.0
    return data


def _start(data: dict, name: str) -> Path:
    run_dir = runs.create_run(parse_config(data), name=name)
    runs.start_run(run_dir, env=ENV)
    return run_dir


def _step_losses(run_dir: Path) -> list[tuple[int, float]]:
    """Every logged (step, loss) in order, repeats included (a resumed run logs some steps again)."""
    recs, _ = runs.read_metrics(run_dir)
    return [(r["step"], r["loss"]) for r in recs if r.get("type") == "metrics" and "loss" in r]


@pytest.fixture(scope="module")
def fsdp(env):
    out = {}
    # LoRA under FSDP: killed (SIGKILL: launcher and both workers) after its step-3 checkpoint,
    # resumed on 2 processes again.
    out["lora2"] = _start(_cfg(env, 2), "fsdp-lora")
    wait_step(out["lora2"], SAVE + 1)
    runs.kill_run(out["lora2"], signal.SIGKILL)
    out["crashed"] = runs.wait_for(out["lora2"], statuses=("crashed",), timeout=60)["status"]
    out["killed_at"] = max(losses(out["lora2"]))
    runs.start_run(out["lora2"], resume=True, env=ENV)
    finish(out["lora2"])
    out["full2"] = _start(_cfg(env, 2, type="full", learning_rate=0.002), "fsdp-full")
    out["lora1"] = in_process(_cfg(env, 1), "ref-lora")
    out["full1"] = in_process(_cfg(env, 1, type="full", learning_rate=0.002), "ref-full")
    finish(out["full2"])
    return out


def test_ranks_train_windows_of_unequal_length(env):
    """What makes the 1-vs-2-process comparison mean something: each step one rank holds a shorter window
    than the other, so the mean of the per-rank means differs from the mean over all targets (the loss a
    single process computes); the 2-process losses below match the pooled one."""
    from core.training.dataset import SongSet, load_dataset_dict

    train = SongSet(load_dataset_dict(env["dataset"])["train"], CROP, 7, random_crop=True, allow_random_crop=True)
    lengths = sorted(train.cropped_length(i) for i in range(len(train)))
    assert len(lengths) == 2 and lengths[0] < lengths[1] <= CROP, lengths


def test_fsdp_lora_matches_one_process_and_resumes_exactly(fsdp):
    one, two = losses(fsdp["lora1"]), losses(fsdp["lora2"])
    assert sorted(one) == sorted(two) == list(range(1, STEPS + 1))
    diffs = [abs(one[s] - two[s]) for s in one]
    assert max(diffs) < 1e-4, diffs
    log = runs.tail_log(fsdp["lora2"], 400)
    assert "| fsdp" in log and "--config_file" in runs.read_run_json(fsdp["lora2"])["command"]
    assert "| freed memory kept for the next step" in log  # a launched CPU rank (core/training/host_memory.py)
    assert "FSDP units: every decoder layer, text/prompt tables, code embeddings, fusion MLP" in log
    # the kill came after step 3's checkpoint; the steps after it were trained twice with the same loss
    assert fsdp["crashed"] == "crashed" and SAVE < fsdp["killed_at"] < STEPS
    seen: dict[int, list[float]] = {}
    for step, loss in _step_losses(fsdp["lora2"]):
        seen.setdefault(step, []).append(loss)
    again = {s: v for s, v in seen.items() if len(v) > 1}
    assert again and min(again) == SAVE + 1, seen
    assert all(abs(v[0] - v[1]) <= 1e-6 for v in again.values()), again
    state = runs.latest_checkpoint(fsdp["lora2"]) / "state"
    assert (state / "pytorch_model_fsdp_0").is_dir() and (state / "optimizer_0").is_dir()  # sharded (DCP)


def test_fsdp_lora_adapter_is_a_peft_checkpoint(fsdp):
    from peft import PeftModel
    from safetensors.torch import load_file

    from core.model import LeLM

    ckpt = runs.latest_checkpoint(fsdp["lora2"])
    ref = runs.latest_checkpoint(fsdp["lora1"])
    got, want = load_file(str(ckpt / "adapter_model.safetensors")), load_file(str(ref / "adapter_model.safetensors"))
    assert got and set(got) == set(want)
    assert max((got[k] - want[k]).abs().max().item() for k in got) < 1e-3
    base = LeLM.from_pretrained(Path(runs.load_run_config(fsdp["lora2"]).paths.base_model_path))
    model = PeftModel.from_pretrained(base, str(ckpt))
    assert sum(1 for n, _ in model.named_parameters() if "lora_" in n) == len(got)


def test_fsdp_full_matches_one_process_and_exports_official_layout(env, fsdp):
    from core.model import LeLM

    one, two = losses(fsdp["full1"]), losses(fsdp["full2"])
    assert sorted(one) == sorted(two) == list(range(1, STEPS + 1))
    assert max(abs(one[s] - two[s]) for s in one) < 1e-4, (one, two)
    ckpt2, ckpt1 = runs.latest_checkpoint(fsdp["full2"]), runs.latest_checkpoint(fsdp["full1"])
    assert ckpt2.name == ckpt1.name == f"step-{STEPS}"
    assert (ckpt2 / "config.yaml").is_file()
    official = torch.load(env["ckpt"] / "model.pt", map_location="cpu", weights_only=True)
    exported = torch.load(ckpt2 / "model.pt", map_location="cpu", weights_only=True)
    assert set(exported) == set(official)
    m2, m1 = LeLM.from_pretrained(ckpt2), LeLM.from_pretrained(ckpt1)
    m1.eval(), m2.eval()
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 100, (1, 3, 20), generator=g)
    with torch.no_grad():
        l1, _ = m1.compute_predictions(codes, lyrics=["[verse] hello there"], descriptions=["female, pop"])
        l2, _ = m2.compute_predictions(codes, lyrics=["[verse] hello there"], descriptions=["female, pop"])
    assert torch.isfinite(l1).all() and (l1 - l2).abs().max().item() < 1e-3


# ---- DPO under FSDP -------------------------------------------------------------------------------
DPO_STEPS = 4


def _dpo_cfg(dpo_env, procs: int, **training) -> dict:
    from tests.test_dpo_train import dpo_config

    dd = dict(max_steps=DPO_STEPS, batch_size=2 // procs, eval_every=2, save_every=100, keep_last=2)
    dd.update(training)
    if procs > 1:
        dd.update(distributed="fsdp", num_processes=procs)
    data = dpo_config(dpo_env["ws"], dpo_env["ckpt"], **dd)
    data["lora"]["dropout"] = 0.0  # dpo.val_fraction as tests/test_dpo_train.py: an odd number of held-out pairs
    return data


@pytest.fixture(scope="module")
def dpo_fsdp(dpo_env):
    from tests.test_dpo_train import in_process as dpo_in_process

    out = {"lora2": _start(_dpo_cfg(dpo_env, 2), "dpo-fsdp-lora"),
           "lora1": dpo_in_process(_dpo_cfg(dpo_env, 1), "dpo-ref-lora")}
    finish(out["lora2"])
    full = dict(type="full", learning_rate=1e-4)
    out["full2"] = _start(_dpo_cfg(dpo_env, 2, **full), "dpo-fsdp-full")
    out["full1"] = dpo_in_process(_dpo_cfg(dpo_env, 1, **full), "dpo-ref-full")
    finish(out["full2"])
    return out


def _evals(run_dir: Path) -> list[dict]:
    recs, _ = runs.read_metrics(run_dir)
    return [r for r in recs if r.get("type") == "event" and r.get("event") == "eval"]


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_fsdp_dpo_matches_one_process(dpo_fsdp, mode):
    """DPO on 2 FSDP processes (1 pair each) = 1 process (2 pairs): per-step losses and the held-out
    metrics of every evaluation, whose odd number of held-out batches splits unevenly over the ranks."""
    one, two = losses(dpo_fsdp[f"{mode}1"]), losses(dpo_fsdp[f"{mode}2"])
    assert sorted(one) == sorted(two) == list(range(1, DPO_STEPS + 1))
    assert max(abs(one[s] - two[s]) for s in one) < 1e-4, (one, two)
    e1, e2 = _evals(dpo_fsdp[f"{mode}1"]), _evals(dpo_fsdp[f"{mode}2"])
    assert [e["step"] for e in e2] == [e["step"] for e in e1] == [2, DPO_STEPS]
    for a, b in zip(e1, e2):
        assert a["pairs"] == b["pairs"] and a["pairs"] % 2 == 1  # rank 0 runs one batch more than rank 1
        for key in ("val_dpo_loss", "val_reward_margin"):
            assert abs(a[key] - b[key]) < 1e-4, (key, a, b)
        # Each reward is beta x a sum of log-probs over every target token of a song. The two runs' weights
        # differ by the all-reduce's summation order, and where the CPU's kernels depend on the batch size
        # (oneDNN on AMX) that drift moves both rewards of a pair alike (1.4e-4 at step 4 on a Xeon with
        # AMX); their margin above cancels it and stays within 1e-4. Relative here, so it holds as they grow.
        for key in ("val_chosen_reward", "val_rejected_reward"):
            assert b[key] == pytest.approx(a[key], rel=5e-3, abs=1e-4), (key, a, b)
        assert a["val_reward_accuracy"] == b["val_reward_accuracy"]
    assert e2[-1]["val_reward_margin"] != 0.0  # the policy moved away from the reference


# ---- FSDP units and the per-GPU estimate (no training) -------------------------------------------
def test_fsdp_units_and_the_estimate_of_what_is_not_sharded(env):
    """The estimate's root unit is what core.training.setup leaves outside every unit (the heads and
    final norms of the real module), and the per-GPU figure adds it and two gathered units to the shards."""
    from core.model import LeLM
    from core.model.official_config import read_official_config
    from core.training.estimate import count_parameters_from_layout, estimate_memory_for, fsdp_unit_parameters
    from core.training.estimate import sharded_memory
    from core.training.setup import shard_unit_names

    lelm = LeLM.from_pretrained(env["ckpt"])
    run, never = shard_unit_names(lelm)
    units = {n for name in run + never for n, _ in lelm.get_submodule(name).named_parameters(prefix=name)}
    layers = {n for n, _ in lelm.named_parameters() if ".layers." in n}
    root = {n: p.numel() for n, p in lelm.named_parameters() if n not in units | layers}
    assert set(root) == {"transformer.lm_head.weight", "linears.0.weight", "linears.1.weight",
                         "transformer.model.norm.weight", "transformer2.model.norm.weight",
                         "out_norm.weight", "out_norm.bias"}, sorted(root)
    assert fsdp_unit_parameters(lelm.config)[0] == sum(root.values())

    # v2-large: the heads in the root and a 151659-row text table per unit stay whole on every GPU
    oc = read_official_config(env["ckpt"] / "config.yaml", env["ckpt"].parents[1])
    oc.dim, oc.intermediate_size, oc.num_layers, oc.num_layers_sub = 2048, 11008, 36, 12
    est = estimate_memory_for(oc, count_parameters_from_layout(oc), mode="full", frames=6750, batch=1,
                              checkpointing=True, act_bytes=2)
    per_gpu = est["activations_gb"] + est["logits_gb"] + est["grads_optimizer_gb"] / 8
    whole = est["fsdp_root_gb"] + 2 * est["fsdp_unit_gb"]
    assert est["fsdp_unit_gb"] == pytest.approx(8 * (151659 + 200) * 2048 / 1e9, abs=0.01)
    assert sharded_memory(est, "fsdp", 8) == pytest.approx(per_gpu + est["weights_gb"] / 8 + whole, abs=0.02)
    assert whole > 2.0 and sharded_memory(est, "deepspeed_zero3", 8) < sharded_memory(est, "fsdp", 8)
    assert sharded_memory(est, "fsdp", 1) == sharded_memory(est, "ddp", 1)


# ---- launch commands and shipped configs (no training) ------------------------------------------
def test_launch_command_for_each_layout(tmp_path):
    cfg_path = tmp_path / "config.yaml"
    cmd = launch.launch_argv(cfg_path, launch.Layout("fsdp", 4))
    assert cmd[:4] == ["accelerate", "launch", "--config_file", str(launch.ACCELERATE_DIR / "fsdp.yaml")]
    assert cmd[4:6] == ["--num_processes", "4"] and cmd[-3:] == ["core.train", "--config", str(cfg_path.resolve())]
    cfg = parse_config({"training": {"distributed": "multi_node", "num_processes": 16, "num_machines": 2,
                                     "main_process_ip": "10.1.2.3", "main_process_port": 29600}})
    both = launch.machine_commands(cfg_path, cfg, resume=True)
    assert len(both) == 2
    for rank, c in enumerate(both):
        assert (f"--num_processes 16 --num_machines 2 --machine_rank {rank} --main_process_ip 10.1.2.3 "
                f"--main_process_port 29600 -m core.train") in c and c.endswith("--resume")
    assert launch.launch_argv(cfg_path)[:3] == ["accelerate", "launch", "-m"]  # auto: accelerate's own default
    ds = launch.layout_for(parse_config({"training": {"distributed": "deepspeed_zero3", "num_processes": 8,
                                                      "gradient_accumulation_steps": 4, "max_grad_norm": 0.5}}))
    assert "--num_processes 8 --gradient_accumulation_steps 4 --gradient_clipping 0.5 -m" in launch.launch_command(
        cfg_path, ds)
    with pytest.raises(ConfigError, match="main_process_ip"):
        launch.layout_for(parse_config({"training": {"num_machines": 2, "num_processes": 4}})).check()
    with pytest.raises(ConfigError, match="multiple"):
        launch.Layout("multi_node", 3, 2, main_process_ip="h").check()
    with pytest.raises(ConfigError, match="single"):
        launch.Layout("single", 2).check()


def test_run_command_follows_the_run_config(env):
    run_dir = runs.create_run(parse_config(_cfg(env, 2)), name="cmd")
    assert runs.command_for(run_dir) == launch.launch_command(run_dir / runs.CONFIG_NAME, launch.Layout("fsdp", 2))
    argv = runs.launch_argv(run_dir, resume=True)
    assert argv[1:3] == ["-m", "accelerate.commands.launch"] and "--config_file" in argv and argv[-1] == "--resume"


@pytest.mark.parametrize("name", sorted(launch.CONFIG_FILES))
def test_shipped_accelerate_configs_parse_with_accelerate(name):
    """accelerate's own config classes and launch-argument validation read every shipped file (the
    DeepSpeed ones cannot run here: no deepspeed package, no GPU)."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DistributedType

    path = launch.config_file(name)
    cfg = load_config_from_file(str(path))
    assert isinstance(cfg, ClusterConfig)
    args = launch_command_parser().parse_args(["--config_file", str(path), "--num_processes", "2", "x.py"])
    args, defaults, mp = _validate_launch_command(args)
    assert args.num_processes == 2 and args.mixed_precision == cfg.mixed_precision
    if name.startswith("deepspeed"):
        stage = int(name[-1])
        assert cfg.distributed_type == DistributedType.DEEPSPEED and cfg.deepspeed_config["zero_stage"] == stage
        assert args.use_deepspeed and int(args.zero_stage) == stage
    elif name in ("fsdp", "multi_node"):
        assert cfg.distributed_type == DistributedType.FSDP and args.use_fsdp
        fc = cfg.fsdp_config
        assert fc["fsdp_version"] == 2 and fc["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
        assert fc["fsdp_activation_checkpointing"] is True and fc["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
        assert args.fsdp_version == "2" or int(args.fsdp_version) == 2
    elif name == "ddp":
        assert cfg.distributed_type == DistributedType.MULTI_GPU and args.multi_gpu
    else:
        assert cfg.distributed_type == DistributedType.NO and cfg.num_processes == 1
