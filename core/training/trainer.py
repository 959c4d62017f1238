"""Finetuning (full or LoRA) under Accelerate: the step and the loop; observable, stoppable, exactly resumable.

    accelerate launch -m core.train --config <run>/config.yaml [--resume [CHECKPOINT]]
    python -m core.train --config <run>/config.yaml            (one process, same code)
    python -m core train --config cfg.yaml                     (core.cli: prints the accelerate command, runs here)

Where things are: the model to train and its optimizer in core.training.setup; what is optimised (data, the
loss of a batch, the held-out measure) in core.training.objective (SFT on songs) and
core.training.dpo_objective (`training.objective: dpo`, preference pairs); what happens after each step
(evaluate, save, sample, stop, early stop) is decided by core.training.control; songs, crops and batches
in core.training.dataset; LoRA layers in core.model.lora; checkpoint layout and resume in
core.training.checkpoints; metrics.jsonl / TensorBoard in core.training.telemetry; listening samples in
core.training.samples; memory/time estimates in core.training.estimate.

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
from core.runs.status import RunStatus
from core.training.checkpoints import Checkpoints, TrainerState
from core.config import ConfigError, StudioConfig, load_config
from core.training.control import Decision, StepControl
from core.training.dataset import BatchPlan
from core.training import host_memory
from core.training.estimate import PEAK_CACHE, machine_label
from core.training.precision import choose as choose_precision
from core.training.precision import cpu_attention
from core.runs.lock import RunLock, RunLocked
from core.training.evaluate import to_device
from core.model import attention
from core.model.lora import target_regex
from core.training.objective import make_objective
from core.training.preflight import effective_max_frames
from core.training.samples import SampleWriter
from core.training.schedule import derive_seed, lr_factor
from core.training.telemetry import StepWindow, Telemetry
from core.training.setup import (build_model, clip_grad_norm, count_parameters, make_optimizer,  # noqa: F401
                                 shard_on_cpu, shard_units)  # (imported from here too)

# ---- the trainer ----------------------------------------------------------------------------
class Trainer:
    def __init__(self, cfg: StudioConfig, config_path: Optional[Path] = None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, DistributedType, ProjectConfiguration

        self.cfg = cfg
        self.tc = cfg.training
        self.run_dir = cfg.output_dir().expanduser().resolve()
        self.config_path = config_path
        # A multi-process launch on a machine without an accelerator must ask for CPU (gloo) itself:
        # accelerate only picks MULTI_CPU when told, otherwise every process would train alone.
        has_accel = torch.cuda.is_available() or bool(getattr(getattr(torch, "xpu", None), "is_available", lambda: False)())
        world = int(os.environ.get("WORLD_SIZE", "1"))
        self.precision = choose_precision(self.tc.mixed_precision, device="cuda" if has_accel else "cpu",
                                          cache_file=cfg.workspace_dir() / PEAK_CACHE, processes=world)
        mp = self.precision.mixed_precision
        # bf16 on a CPU: the attention kernel this machine trains faster with (core.training.precision)
        blocks, self.attention = False, None
        if mp == "bf16" and not has_accel:
            blocks, self.attention = cpu_attention(cfg.workspace_dir() / PEAK_CACHE, measure=world <= 1)
        attention.enable_blocks(blocks)
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
        self.control = StepControl(self.tc, self.run_dir, is_main=self.is_main, share=self._sum_over_processes)
        self.samples = None
        self.last_loss: Optional[float] = None

    @property
    def total_steps(self) -> int:
        return self.control.total_steps

    @total_steps.setter
    def total_steps(self, value: int) -> None:
        self.control.total_steps = value

    def _sum_over_processes(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, device=self.accelerator.device)
        if self.world > 1:
            t = self.accelerator.reduce(t, reduction="sum")
        return t.tolist()

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
                 f" | precision {self.precision.reason}{f' | {self.attention}' if self.attention else ''}"
                 f" | processes {self.world} | device {acc.device}"
                 f" | {str(acc.distributed_type).split('.')[-1].lower()}"
                 f"{' | freed memory kept for the next step' if host_memory.KEPT else ''}")
        if tc.type == "lora":
            self.log(f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} dropout={cfg.lora.dropout} targets {target_regex(cfg)}")

        mcfg = self.lelm.config
        self.max_frames = effective_max_frames(tc.max_frames, mcfg.max_frames)
        self.objective = make_objective(self)  # SFT on songs or DPO on pairs: data, step, evaluation
        self.train_set, self.val_set = self.objective.train_set, self.objective.val_set
        self.dataset_dir = self.objective.data_dir
        self.plan = BatchPlan(self.objective.lengths(), tc.batch_size, tc.seed, tc.bucket_size, self.rank, self.world)
        ga = tc.gradient_accumulation_steps
        self.total_steps = tc.max_steps or max(1, math.ceil(tc.epochs * self.plan.batches_per_epoch / ga))

        units = shard_units(acc, self.lelm)  # FSDP2 only; before the optimizer: it must hold the sharded tensors
        if units:
            self.log(f"FSDP units: every decoder layer, text/prompt tables, code embeddings, fusion MLP "
                     f"({units['units']:,} parameters); root (heads, norms) {units['root']:,}")
        self.optimizer = make_optimizer(cfg, self.model, acc.device)
        plugin = getattr(acc.state, "fsdp_plugin", None)
        if self.sharded and plugin is not None and plugin.activation_checkpointing:
            # The same per-decoder-layer recompute through transformers instead of accelerate's
            # CheckpointWrapper, which would rename every layer's parameters (peft could then not
            # find its adapter weights in the gathered state dict).
            plugin.activation_checkpointing = False
            self.lelm.gradient_checkpointing_enable()
            self.log("activation checkpointing: every Llama decoder layer recomputed in backward")
        self.step_module = self.objective.step_module()
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

    def save_checkpoint(self, step: int, reason: str, best: bool = False) -> Path:
        return self.checkpoints.save(step, reason, self.step_module, self.total_steps, loss=self.last_loss,
                                     val_loss=self.control.val_at(step), best=best)

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
        """Train to the last step, or until Stop / early stopping. -> "done" | "stopped"."""
        step = self._begin(resume)
        ga = self.tc.gradient_accumulation_steps
        self.plan.start, self.plan.stop = step * ga, self.total_steps * ga
        batches = iter(self.objective.loader(self.plan, self.tc.num_workers))
        self.window = StepWindow()
        ending = None
        while step < self.total_steps and ending is None:
            row = self._optimizer_step(step, batches)
            step += 1
            self.state.step, self.last_loss = step, row["loss"]
            self.window.add(row)
            if self.control.log_now(step):
                self._log_metrics(step)
            ending = self._carry_out(self.control.decide(step, self.control.read_flags(), self._evaluate_now(step)))
        del batches  # ends the loader's worker processes
        if ending == RunStatus.STOPPED:
            return RunStatus.STOPPED
        self._log_metrics(step)
        self.save_checkpoint(step, *self._end_verdict(step))
        self.make_samples(step, "end")
        return RunStatus.DONE

    def _end_verdict(self, step: int) -> tuple[str, bool]:
        """(reason, best) of the last checkpoint. A step the loop already evaluated (e.g. early stopping) is not
        evaluated or judged again: when it is the best, its checkpoint keeps the reason "best"."""
        ctl = self.control
        if ctl.val_at(step) is None:
            return "end", ctl.judge(step, self.objective.evaluate(step))
        best = ctl.last_val == (step, ctl.best_val)
        return ("best" if best else "end"), best

    def _begin(self, resume: Optional[str]) -> int:
        """Resume (or refuse to train over an existing run), prepare the objective, announce the phase.
        -> the step this session starts from."""
        start_step = 0
        if resume:
            ckpt = self.checkpoints.find(resume)
            if ckpt is None:
                self.log("resume requested but the run has no checkpoint yet: starting from step 0")
            else:
                start_step = self.checkpoints.resume(ckpt, runs.config_hash(self.cfg))
                self.log(f"resumed from {ckpt} at step {start_step}")
                self.control.best_val = self.checkpoints.best()
        elif runs.checkpoints(self.run_dir):
            raise runs.RunError(f"{self.run_dir} already has checkpoints; pass --resume to continue this run, "
                                "or use a new paths.output_dir", code="run_has_checkpoints", run=self.run_dir.name)
        self.objective.prepare(start_step)
        self.tel.event("phase", phase="train", step=start_step, total=self.total_steps, resumed=bool(start_step),
                       mode=self.tc.type, trainable=self.trainable, parameters=self.total_params,
                       processes=self.world, mixed_precision=self.mixed_precision,
                       max_frames=self.max_frames, dataset=str(self.dataset_dir),
                       machine=machine_label(str(self.accelerator.device.type)))
        if start_step == 0:
            self.make_samples(0, "start")
        return start_step

    def _optimizer_step(self, step: int, batches) -> dict[str, float]:
        """Step `step` + 1: gradient accumulation over the micro-batches, clipping, optimizer and scheduler.
        -> its row for the metrics window (statistics averaged over micro-batches and processes)."""
        acc, tc, ga = self.accelerator, self.tc, self.tc.gradient_accumulation_steps
        t0 = time.time()
        lr = self.scheduler.get_last_lr()[0]
        stats = torch.zeros(len(self.objective.stat_keys), device=acc.device)
        tokens = 0
        for micro in range(ga):
            batch = next(batches)
            tokens += int(batch["lengths"].sum()) * 3
            torch.manual_seed(derive_seed(tc.seed, "step", step, micro, self.rank))
            self.lelm.seed_condition_dropout(derive_seed(tc.seed, "cond", step, micro, self.rank))
            batch = to_device(batch, acc.device)
            sync = micro == ga - 1
            with nullcontext() if sync or self.world == 1 else acc.no_sync(self.step_module):
                loss, micro_stats = self.objective.forward(self.step_module, batch)
                acc.backward(loss / ga)
            stats += micro_stats.detach().float() / ga
        grad_norm = clip_grad_norm(acc, self.optimizer, tc.max_grad_norm if tc.max_grad_norm > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.world > 1:
            stats = acc.reduce(stats, reduction="mean")
            tokens = int(acc.reduce(torch.tensor([float(tokens)], device=acc.device), reduction="sum").item())
        return {**self.objective.record(stats.tolist()), "grad_norm": float(grad_norm), "tokens": tokens,
                "dt": time.time() - t0, "epoch": self.plan.epoch_of(step * ga + ga - 1), "lr": lr}

    def _evaluate_now(self, step: int) -> Optional[float]:
        return self.objective.evaluate(step) if self.control.evaluate_now(step) else None

    def _carry_out(self, d: Decision) -> Optional[str]:
        """Do what the control decided after a step. -> "stopped" / "early_stop" when the loop ends here."""
        step, ctl = d.step, self.control
        if d.save_best:
            self.save_checkpoint(step, "best", best=True)
        if d.early_stop:
            self.log(f"step {step}: early stopping, the validation loss has not improved in "
                     f"{ctl.bad_evals} evaluations (best {ctl.best_val:.4f})")
            self.tel.event("early_stop", step=step, best_val_loss=ctl.best_val, evaluations=ctl.bad_evals)
            self.total_steps = step  # the run ends here as done: final evaluation, checkpoint, samples
            return "early_stop"
        if d.stop:
            self.save_checkpoint(step, "stop")
            return RunStatus.STOPPED
        if d.save:
            self.save_checkpoint(step, d.save, best=d.save_is_best)
        if d.sample:
            self.make_samples(step, d.sample)
        return None

    def _log_metrics(self, step: int) -> None:
        if not self.window.rows:
            return
        means = [k for k in self.window.rows[0] if k not in StepWindow.OWN + ("loss", "grad_norm")]
        rec = self.window.record(step, self.total_steps, self.state.elapsed_s, self.accelerator.device)
        if not self.is_main:
            return
        self.tel.scalars(step, "train", rec)
        parts = " ".join(f"{k.replace('loss_', '')} {rec[k]:.3f}" for k in means)
        print(f"[train] step {step}/{self.total_steps} loss {rec['loss']:.4f} ({parts}) "
              f"lr {rec['lr']:.3g} grad {rec['grad_norm']:.3g} {rec['tokens_per_s']:.0f} tok/s "
              f"eta {rec['eta_s']:.0f}s", flush=True)

    def _on_sigterm(self, signum, frame) -> None:
        self.control.signal_stop = True


# ---- run.json bookkeeping and the entry points ----------------------------------------------
def _record_start(trainer: Trainer, cfg: StudioConfig, resume: Optional[str]) -> None:
    """Mark the run as running in run.json; a run started from a shell (not by runs.start_run)
    also records its own process, start time and command."""
    run_dir = trainer.run_dir
    info = runs.read_run_json(run_dir)
    fields: dict[str, Any] = {"status": RunStatus.RUNNING, "trainer_pid": os.getpid(), "ended": None, "error": None,
                              "config_hash": runs.config_hash(cfg), "run_id": info.get("run_id", run_dir.name),
                              "mode": cfg.training.type, "processes": trainer.world}
    by_studio = info.get("status") in (RunStatus.STARTING, RunStatus.STOPPING) and process.pid_alive(info.get("pid"))
    if info.get("status") == RunStatus.STOPPING:
        fields["status"] = RunStatus.STOPPING
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
            msg, status = f"{type(err).__name__}: {err}", RunStatus.ERROR
            if cio.is_disk_full(err):  # something the user must fix outside the run: say it plainly
                status = RunStatus.FAILED
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
        trainer.tel.event(str(outcome), step=step, total=trainer.total_steps)
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
    host_memory.for_cpu_trainer()
    try:
        outcome = train(cfg, resume=args.resume, config_path=Path(args.config))
    except RunLocked as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    return 0 if outcome in (RunStatus.DONE, RunStatus.STOPPED) else 1


if __name__ == "__main__":
    sys.exit(main())
