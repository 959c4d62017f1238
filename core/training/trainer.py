"""Finetuning (full or LoRA) under Accelerate: the step and the loop; observable, stoppable, exactly resumable.

    accelerate launch -m core.train --config <run>/config.yaml [--resume [CHECKPOINT]]
    python -m core.train --config <run>/config.yaml            (one process, same code)
    python -m core train --config cfg.yaml                     (core.cli: prints the accelerate command, runs here)

Where things are: the model to train and its optimizer in core.training.setup; the loss of a batch and
the validation loss in core.training.evaluate; songs, crops and
batches in core.training.dataset; LoRA layers in core.model.lora; checkpoint layout and resume in
core.training.checkpoints; metrics.jsonl / TensorBoard in core.training.telemetry; listening samples in core.training.samples;
memory/time estimates in core.training.estimate. `training.objective: dpo` trains on preference pairs instead
of songs: its data, loss and held-out metrics come from core.training.dpo_objective (`self.objective`).

Determinism: each micro-step reseeds torch's RNG (LoRA dropout) and the model's condition-dropout
generator from (seed, step, micro-step, rank); data order and crops are functions of (seed, epoch)
(core.training.dataset.BatchPlan). Resume therefore needs the weights and optimizer (`accelerator.save_state`)
plus the scheduler, RNG and step, which core.training.safe_state keeps as JSON + safetensors (nothing in a
checkpoint is unpickled), and a resumed run logs the same per-step losses as an uninterrupted one.
One trainer per run folder (core.runs.lock); a full disk ends the run "failed" with a "disk full" reason.
Telemetry is written by the main process only. `tokens_per_s` counts valid frames x 3 streams of
all processes per second of step time.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import torch

from core.training import safe_state as cio
from core.runs import process
from core.runs import store as runs
from core.training.checkpoints import Checkpoints, TrainerState
from core.config import ConfigError, StudioConfig, load_config
from core.training.dataset import BatchPlan, SongSet, batch_loader, find_dataset_dir, load_dataset_dict
from core.training.estimate import machine_label, resolve_mixed_precision
from core.runs.lock import RunLock, RunLocked
from core.training.evaluate import BatchLoss, pooled, stream_sums, to_device
from core.model.lora import target_regex
from core.training.samples import SampleWriter
from core.training.schedule import derive_seed, lr_factor
from core.training.telemetry import Telemetry, memory_mb
from core.training.setup import build_model, count_parameters, make_optimizer, shard_on_cpu  # noqa: F401  (imported from here too)

# ---- the trainer ----------------------------------------------------------------------------
class Trainer:
    def __init__(self, cfg: StudioConfig, config_path: Optional[Path] = None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, DistributedType, ProjectConfiguration

        self.cfg = cfg
        self.tc = cfg.training
        self.run_dir = cfg.output_dir().expanduser().resolve()
        self.config_path = config_path
        mp = resolve_mixed_precision(self.tc.mixed_precision)
        # A multi-process launch on a machine without an accelerator must ask for CPU (gloo) itself:
        # accelerate only picks MULTI_CPU when told, otherwise every process would train alone.
        has_accel = torch.cuda.is_available() or bool(getattr(getattr(torch, "xpu", None), "is_available", lambda: False)())
        world = int(os.environ.get("WORLD_SIZE", "1"))
        self.accelerator = Accelerator(
            cpu=(world > 1 and not has_accel),
            mixed_precision=mp,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
            log_with=Telemetry.trackers(self.run_dir),
            project_config=ProjectConfiguration(project_dir=str(self.run_dir), logging_dir=str(self.run_dir)),
        )
        acc = self.accelerator
        if world > 1 and not has_accel:
            shard_on_cpu(acc)
        self.is_main = acc.is_main_process
        self.rank, self.world = acc.process_index, acc.num_processes
        self.mixed_precision = mp
        self.sharded = acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        self.tel = Telemetry(acc, self.run_dir)
        self._signal_stop = False
        self.samples = None
        self.last_loss: Optional[float] = None
        self.last_val: Optional[tuple[int, float]] = None  # (step, validation loss) of the latest evaluation
        self.best_val: Optional[float] = None
        self.bad_evals = 0  # evaluations since the last improvement (early stopping)

    def log(self, msg: str) -> None:
        if self.is_main:
            print(f"[train] {msg}", flush=True)

    def setup(self) -> None:
        cfg, tc, acc = self.cfg, self.tc, self.accelerator
        if self.is_main:
            own = self.run_dir / runs.CONFIG_NAME
            if self.config_path is None or own.resolve() != self.config_path.resolve():
                cfg.save(own)
        torch.manual_seed(tc.seed)
        self.model, self.lelm, self.base_dir = build_model(cfg)
        self.trainable, self.total_params = count_parameters(self.model)
        share = 100.0 * self.trainable / max(1, self.total_params)
        self.log(f"mode {tc.type}: {self.trainable:,} trainable of {self.total_params:,} parameters ({share:.3f}%)"
                 f" | mixed precision {self.mixed_precision} | processes {self.world} | device {acc.device}"
                 f" | {str(acc.distributed_type).split('.')[-1].lower()}")
        if tc.type == "lora":
            self.log(f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} dropout={cfg.lora.dropout} targets {target_regex(cfg)}")

        mcfg = self.lelm.config
        self.max_frames = min(tc.max_frames or mcfg.max_frames, mcfg.max_frames)
        self.objective = None  # SFT on songs; DPO (core.training.dpo_objective) swaps data, step and evaluation
        if tc.objective == "dpo":
            from core.training.dpo_objective import DPOObjective
            self.objective = DPOObjective(self)
            self.train_set, self.val_set = self.objective.train_set, self.objective.val_set
            self.dataset_dir, lengths = self.objective.info["pairs_dir"], self.objective.lengths()
            self.log(self.objective.describe())
        else:
            self.dataset_dir = find_dataset_dir(cfg)
            ds = load_dataset_dict(self.dataset_dir)
            # random crops that keep a whole song's lyrics are refused for real checkpoints (core.training.dataset)
            crop_kw = dict(allow_random_crop=bool(getattr(self.lelm, "is_demo", False)), frame_rate=mcfg.frame_rate)
            self.train_set = SongSet(ds["train"], self.max_frames, tc.seed, random_crop=True, **crop_kw)
            val = ds["validation"] if "validation" in ds else None
            self.val_set = SongSet(val, self.max_frames, tc.seed, random_crop=False, **crop_kw) if val is not None else None
            for note in self.train_set.notes:
                self.log(note)
            if len(self.train_set) == 0:
                raise ConfigError(f"{self.dataset_dir}: the train split is empty")
            lengths = [self.train_set.cropped_length(i) for i in range(len(self.train_set))]
        self.plan = BatchPlan(lengths, tc.batch_size, tc.seed, tc.bucket_size, self.rank, self.world)
        ga = tc.gradient_accumulation_steps
        self.total_steps = tc.max_steps or max(1, math.ceil(tc.epochs * self.plan.batches_per_epoch / ga))

        self.optimizer = make_optimizer(cfg, self.model, acc.device)
        plugin = getattr(acc.state, "fsdp_plugin", None)
        if self.sharded and plugin is not None and plugin.activation_checkpointing:
            # The same per-decoder-layer recompute through transformers instead of accelerate's
            # CheckpointWrapper, which would rename every layer's parameters (peft could then not
            # find its adapter weights in the gathered state dict).
            plugin.activation_checkpointing = False
            self.lelm.gradient_checkpointing_enable()
            self.log("activation checkpointing: every Llama decoder layer recomputed in backward")
        self.step_module = self.objective.step_module() if self.objective else BatchLoss(self.model, self.lelm)
        self.step_module.train()
        self.step_module, self.optimizer = acc.prepare(self.step_module, self.optimizer)
        warm, total, m = tc.warmup_steps, self.total_steps, tc.lr_min_ratio
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(getattr(self.optimizer, "optimizer", self.optimizer),
                                                           lambda u: lr_factor(u, total, warm, m))
        self.state = TrainerState(self.lelm)
        self.state.config_hash = runs.config_hash(cfg)
        # not register_for_checkpointing: accelerate pickles those objects (core.training.safe_state keeps them as JSON)
        self.checkpoints = Checkpoints(acc, self.run_dir, self.lelm, self.state, self.scheduler, mode=tc.type, keep_last=tc.keep_last,
                                       base_dir=self.base_dir, event=self.tel.event, log=self.log)
        self.log(f"data {self.dataset_dir}: {len(self.train_set)} train / {len(self.val_set or [])} validation songs, "
                 f"crop {self.max_frames} frames, global batch {tc.batch_size * self.world} x accumulation {ga}, "
                 f"{self.plan.batches_per_epoch} batches/epoch, {self.total_steps} steps, "
                 f"{tc.num_workers} data workers")

    # -- control flags: main reads the files, every process learns the decision
    def poll_flags(self) -> dict[str, bool]:
        local = [0.0, 0.0, 0.0]
        if self._signal_stop:
            local[0] = 1.0
        if self.is_main:
            for i, flag in enumerate(runs.FLAGS):
                path = runs.flag_path(self.run_dir, flag)
                if path.exists():
                    local[i] = 1.0
                    if flag != "stop":
                        path.unlink(missing_ok=True)
        t = torch.tensor(local, device=self.accelerator.device)
        if self.world > 1:
            t = self.accelerator.reduce(t, reduction="sum")
        return {flag: bool(t[i] > 0) for i, flag in enumerate(runs.FLAGS)}

    def save_checkpoint(self, step: int, reason: str, best: bool = False) -> Path:
        val = self.last_val[1] if self.last_val and self.last_val[0] == step else None
        return self.checkpoints.save(step, reason, self.step_module, self.total_steps, loss=self.last_loss,
                                     val_loss=val, best=best)

    def evaluate_and_keep_best(self, step: int, reason: Optional[str] = None) -> bool:
        """Validation loss at `step`; a new lowest one is saved as the "best" checkpoint (with `reason`,
        else "best"). -> True when early stopping says to stop (no improvement of at least min_delta in
        `early_stopping_patience` evaluations)."""
        val = self.evaluate(step)
        if val is None:
            if reason:
                self.save_checkpoint(step, reason)
            return False
        self.last_val = (step, val)
        is_best = self.best_val is None or val < self.best_val
        if self.best_val is None or val < self.best_val - self.tc.early_stopping_min_delta:
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        if is_best:
            self.best_val = val
        if is_best or reason:
            self.save_checkpoint(step, reason or "best", best=is_best)
        patience = self.tc.early_stopping_patience
        return patience > 0 and self.bad_evals >= patience

    # -- evaluation and samples
    def evaluate(self, step: int) -> Optional[float]:
        if self.objective:
            return self.objective.evaluate(step)
        if self.val_set is None or len(self.val_set) == 0:
            return None
        acc = self.accelerator
        # sharded weights: a forward is a collective, so every rank runs every batch (same result)
        rank, world = (0, 1) if self.sharded else (self.rank, self.world)
        sums, counts = stream_sums(acc.unwrap_model(self.step_module), self.val_set, self.lelm.config.prompt_frames,
                                   self.lelm.version, batch_size=self.tc.batch_size, device=acc.device,
                                   rank=rank, world=world, autocast=acc.autocast)
        if world > 1:
            sums = acc.reduce(sums.to(acc.device), reduction="sum")
            counts = acc.reduce(counts.to(acc.device), reduction="sum")
        loss, per = pooled(sums, counts)
        if self.is_main:
            self.tel.event("eval", step=step, val_loss=loss, val_loss_mixed=per[0], val_loss_vocal=per[1],
                           val_loss_bgm=per[2], songs=len(self.val_set))
            self.tel.scalars(step, "val", {"loss": loss, "loss_mixed": per[0], "loss_vocal": per[1], "loss_bgm": per[2]})
            self.log(f"step {step}: validation loss {loss:.4f}")
        return loss

    def make_samples(self, step: int, reason: str) -> None:
        if self.tc.num_samples <= 0:
            return
        if self.sharded:  # generation would have to run on every rank (each forward is a collective)
            if step == 0:
                self.log("listening samples are off under sharded training (FSDP / DeepSpeed); "
                         "generate from a checkpoint instead")
            return
        if self.is_main:
            if self.samples is None:
                self.samples = SampleWriter(self.cfg, self.lelm, self.train_set.split, self.run_dir / "samples")
            files = self.samples.write(step, reason, self.accelerator.autocast, self.tel.event)
            self.log(f"step {step}: {len(files)} samples in {self.samples.out_dir}")
        self.accelerator.wait_for_everyone()

    # -- the loop
    def fit(self, resume: Optional[str]) -> str:
        acc, tc = self.accelerator, self.tc
        start_step = 0
        if resume:
            ckpt = self.checkpoints.find(resume)
            if ckpt is None:
                self.log("resume requested but the run has no checkpoint yet: starting from step 0")
            else:
                start_step = self.checkpoints.resume(ckpt, runs.config_hash(self.cfg))
                self.log(f"resumed from {ckpt} at step {start_step}")
                self.best_val = self.checkpoints.best()
        elif runs.checkpoints(self.run_dir):
            raise RuntimeError(f"{self.run_dir} already has checkpoints; pass --resume to continue this run, "
                               "or use a new paths.output_dir")
        if self.objective:
            self.objective.prepare_reference(start_step)
        self.tel.event("phase", phase="train", step=start_step, total=self.total_steps, resumed=bool(start_step),
                       mode=tc.type, trainable=self.trainable, parameters=self.total_params,
                       processes=self.world, mixed_precision=self.mixed_precision,
                       max_frames=self.max_frames, dataset=str(self.dataset_dir),
                       machine=machine_label(str(acc.device.type)))
        if start_step == 0:
            self.make_samples(0, "start")
        ga = tc.gradient_accumulation_steps
        params = [p for p in self.step_module.parameters() if p.requires_grad]
        self.plan.start, self.plan.stop = start_step * ga, self.total_steps * ga
        batches = iter(self.objective.loader(self.plan, tc.num_workers) if self.objective else
                       batch_loader(self.train_set, self.plan, self.lelm.config.prompt_frames, self.lelm.version,
                                    tc.num_workers))
        t_session = time.time()
        steps_session = 0
        window: list[dict[str, float]] = []
        outcome = "done"
        step = start_step
        while step < self.total_steps:
            t0 = time.time()
            lr = self.scheduler.get_last_lr()[0]
            loss_acc = torch.zeros(len(self.objective.stat_keys) if self.objective else 3, device=acc.device)
            tokens = 0
            epoch = self.plan.epoch_of(step * ga + ga - 1)
            for micro in range(ga):
                batch = next(batches)
                tokens += int(batch["lengths"].sum()) * 3
                torch.manual_seed(derive_seed(tc.seed, "step", step, micro, self.rank))
                self.lelm.seed_condition_dropout(derive_seed(tc.seed, "cond", step, micro, self.rank))
                batch = to_device(batch, acc.device)
                sync = micro == ga - 1
                with nullcontext() if sync or self.world == 1 else acc.no_sync(self.step_module):
                    if self.objective:
                        loss, stats = self.objective.forward(self.step_module, batch)
                    else:
                        stats, _ = self.step_module(**batch)  # per-stream losses
                        loss = stats.mean()
                    acc.backward(loss / ga)
                loss_acc += stats.detach().float() / ga
            grad_norm = acc.clip_grad_norm_(params, tc.max_grad_norm if tc.max_grad_norm > 0 else float("inf"))
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            step += 1
            steps_session += 1
            self.state.step = step
            if self.world > 1:
                loss_acc = acc.reduce(loss_acc, reduction="mean")
                tokens = int(acc.reduce(torch.tensor([float(tokens)], device=acc.device), reduction="sum").item())
            per = loss_acc.tolist()
            named = self.objective.record(per) if self.objective else {
                "loss": sum(per) / 3, "loss_mixed": per[0], "loss_vocal": per[1], "loss_bgm": per[2]}
            self.last_loss = named["loss"]
            window.append({**named, "grad_norm": float(grad_norm), "tokens": tokens, "dt": time.time() - t0})
            if step % tc.log_every == 0 or step == self.total_steps:
                self._log_metrics(step, epoch, lr, window, t_session, steps_session)
                window = []
            flags = self.poll_flags()
            if step % tc.eval_every == 0 and step < self.total_steps and self.evaluate_and_keep_best(step):
                self.log(f"step {step}: early stopping, the validation loss has not improved in "
                         f"{self.bad_evals} evaluations (best {self.best_val:.4f})")
                self.tel.event("early_stop", step=step, best_val_loss=self.best_val, evaluations=self.bad_evals)
                self.total_steps = step  # the run ends here as done: final evaluation, checkpoint, samples
                break
            if flags["stop"]:
                self.save_checkpoint(step, "stop")
                outcome = "stopped"
                break
            if flags["save"]:  # kept to the end of the run, whatever else this step saved
                self.save_checkpoint(step, "save-now", best=self.last_val == (step, self.best_val))
            elif self.checkpoints.last_step == step:
                pass  # this step was just saved as the best one
            elif step % tc.save_every == 0 and step < self.total_steps:
                self.save_checkpoint(step, "save_every")
            if (tc.sample_every and step % tc.sample_every == 0 and step < self.total_steps) or flags["sample"]:
                self.make_samples(step, "sample-now" if flags["sample"] else "sample_every")
        del batches  # ends the loader's worker processes
        if outcome == "done":
            if window:
                self._log_metrics(step, epoch, lr, window, t_session, steps_session)
            self.evaluate_and_keep_best(step, "end")
            self.make_samples(step, "end")
        return outcome

    def _log_metrics(self, step, epoch, lr, window, t_session, steps_session) -> None:
        if not self.is_main or not window:
            return
        n = len(window)
        mean = {k: sum(w[k] for w in window) / n for k in window[0] if k not in ("tokens", "dt")}
        dt = sum(w["dt"] for w in window)
        elapsed = time.time() - t_session
        eta = elapsed / max(1, steps_session) * (self.total_steps - step)
        rec = {"total": self.total_steps, "epoch": epoch, **mean, "lr": lr,
               "tokens_per_s": sum(w["tokens"] for w in window) / max(dt, 1e-9),
               "step_s": round(dt / n, 4),  # mean step time of the window: the time estimate's measurement
               "memory_mb": memory_mb(self.accelerator.device), "elapsed_s": round(elapsed + self.state.elapsed_s, 3),
               "eta_s": round(eta, 1)}
        self.tel.scalars(step, "train", rec)
        parts = " ".join(f"{k.replace('loss_', '')} {v:.3f}" for k, v in mean.items() if k not in ("loss", "grad_norm"))
        print(f"[train] step {step}/{self.total_steps} loss {mean['loss']:.4f} ({parts}) "
              f"lr {lr:.3g} grad {mean['grad_norm']:.3g} {rec['tokens_per_s']:.0f} tok/s eta {eta:.0f}s", flush=True)

    def _on_sigterm(self, signum, frame) -> None:
        self._signal_stop = True


# ---- run.json bookkeeping and the entry points ----------------------------------------------
def _record_start(trainer: Trainer, cfg: StudioConfig, resume: Optional[str]) -> None:
    """Mark the run as running in run.json; a run started from a shell (not by runs.start_run)
    also records its own process, start time and command."""
    run_dir = trainer.run_dir
    info = runs.read_run_json(run_dir)
    fields: dict[str, Any] = {"status": "running", "trainer_pid": os.getpid(), "ended": None, "error": None,
                              "config_hash": runs.config_hash(cfg), "run_id": info.get("run_id", run_dir.name),
                              "mode": cfg.training.type, "processes": trainer.world}
    by_studio = info.get("status") in ("starting", "stopping") and process.pid_alive(info.get("pid"))
    if info.get("status") == "stopping":
        fields["status"] = "stopping"
    if not by_studio:
        # the shell's process group is the user's job, not ours: record no pgid a stop could signal
        fields.update(pid=os.getpid(), pgid=None, launched_by="shell", pid_start=process.process_start_time(os.getpid()),
                      started=runs.now_iso(), created=info.get("created") or runs.now_iso(),
                      command=runs.command_for(run_dir, resume=bool(resume)))
    runs.update_run_json(run_dir, **fields)


def train(cfg: StudioConfig, resume: Optional[str] = None, config_path: Optional[Path] = None) -> str:
    """Run (or resume) training in this process (one rank of an accelerate launch). -> "done" | "stopped".

    The main process first takes the run folder's lock (core.runs.lock): a second trainer on the same
    output_dir raises RunLocked naming the holder before it writes anything."""
    lock = None
    if int(os.environ.get("RANK", "0")) == 0:  # the main process of a launch, or a plain process
        run_dir = cfg.output_dir().expanduser().resolve()
        lock = RunLock(run_dir, command=runs.command_for(run_dir, resume=bool(resume))).acquire()
    try:
        return _train(Trainer(cfg, config_path), cfg, resume)
    finally:
        if lock is not None:
            lock.release()


def _train(trainer: Trainer, cfg: StudioConfig, resume: Optional[str]) -> str:
    run_dir = trainer.run_dir
    if trainer.is_main:
        _record_start(trainer, cfg, resume)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, trainer._on_sigterm)
    except ValueError:
        pass  # not the main thread (e.g. called from a test thread): the stop flag still works
    try:
        trainer.setup()
        outcome = trainer.fit(resume)
    except BaseException as err:
        if trainer.is_main:
            msg, status = f"{type(err).__name__}: {err}", "error"
            if cio.is_disk_full(err):  # something the user must fix outside the run: say it plainly
                status = "failed"
                msg = (err.strerror if isinstance(err, cio.DiskFullError) else
                       f"disk full ({msg}): free some space (old runs, exports), then resume")
            try:
                trainer.tel.event("error", message=msg, traceback=traceback.format_exc()[-4000:])
            except OSError:
                pass  # metrics.jsonl may be unwritable on a full disk; run.json below is small
            runs.update_run_json(run_dir, status=status, ended=runs.now_iso(), error=msg)
        trainer.tel.close()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if trainer.is_main:
        step = trainer.state.step
        trainer.tel.event("stopped" if outcome == "stopped" else "done", step=step, total=trainer.total_steps)
        runs.update_run_json(run_dir, status=outcome, ended=runs.now_iso(), step=step, error=None)
        runs.flag_path(run_dir, "stop").unlink(missing_ok=True)
    trainer.accelerator.end_training()  # finishes the trackers, ends the process group
    return outcome


# ---- entry point ----------------------------------------------------------------------------
def main(argv: Optional[list[str]] = None) -> int:
    """Entry of `accelerate launch -m core.train` / `python -m core.train` (every rank runs this);
    the user-facing `train` command with its help lives in core.cli."""
    from core.config import parse_override

    p = argparse.ArgumentParser(prog="core.train", description="One rank of a finetuning run under accelerate.")
    p.add_argument("--config", required=True, help="the run's config.yaml")
    p.add_argument("--resume", nargs="?", const="latest", default=None,
                   help="continue from the latest checkpoint of the run (or from the given checkpoints/step-N)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, dict(parse_override(s) for s in args.set))
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    try:
        outcome = train(cfg, resume=args.resume, config_path=Path(args.config))
    except RunLocked as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    return 0 if outcome in ("done", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
