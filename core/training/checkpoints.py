"""Training checkpoints: layout, atomic save, exact resume.

Layout `<run>/checkpoints/step-N/`: adapter files (LoRA: `adapter_config.json` +
`adapter_model.safetensors`, loadable by peft) or `config.yaml + model.pt` (full: the official
layout), `trainer_state.json` (step, total, mode, reason, config hash, base model: read by export
and hub), `state/` (accelerate's `save_state`: weights and optimizer; plus, without pickle, the
scheduler, the RNG states and our `TrainerState` with the step and the condition-dropout generator:
core.training.safe_state), and `manifest.json` (size + sha256 of every file, written last). For LoRA runs
accelerate's state keeps only the trainable (adapter) weights, not the base model.

A checkpoint is written to a temporary folder `.step-N.tmp` and renamed when complete; resume takes
the newest one whose manifest checks out (core.training.safe_state.choose_resume) and names those it skips.
Retention: the last `training.keep_last` periodic ones are kept; a "save-now", "stop" or "end"
checkpoint and the best one (lowest validation loss, recorded in run.json `best`) are never pruned.
Resume needs nothing else: data order, crops and every random draw of a step are functions of
(seed, step) (core.training.schedule), so the resumed run continues the same sequence.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn as nn
from accelerate.utils import DistributedType

from core.training import safe_state as cio
from core.runs import store as runs


class TrainerState:
    """Our part of a checkpoint's state: JSON (`state/trainer.json`) and one generator state (safetensors)."""

    def __init__(self, lelm: nn.Module):
        self.lelm = lelm
        self.step = 0
        self.config_hash = ""
        self.elapsed_s = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "config_hash": self.config_hash, "elapsed_s": self.elapsed_s}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"condition_dropout": self.lelm.condition_dropout_state()["generator"]}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.step = int(state["step"])
        self.config_hash = str(state.get("config_hash", ""))
        self.elapsed_s = float(state.get("elapsed_s", 0.0))
        if "condition_dropout" in tensors:
            self.lelm.load_condition_dropout_state({"generator": tensors["condition_dropout"]})


class _GatheredLeLM:
    """What core.model.checkpoint.save_pretrained reads from a LeLM, with a gathered (unsharded) state dict."""

    def __init__(self, lelm: nn.Module, state: dict[str, torch.Tensor]):
        self.config, self.version = lelm.config, lelm.version
        self.checkpoint_dtype = lelm.checkpoint_dtype
        self.source_dir = lelm.source_dir
        self.is_demo = getattr(lelm, "is_demo", False)
        self._state = state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state


def _trainable_keys(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _lora_save_hook(models, weights, output_dir) -> None:
    for i, model in enumerate(models):
        keep = _trainable_keys(model)
        if i < len(weights):
            weights[i] = {k: v for k, v in weights[i].items() if k in keep}


def _lora_load_hook(models, input_dir) -> None:
    from safetensors import safe_open

    path = Path(input_dir) / "model.safetensors"
    if not path.is_file():
        raise cio.CheckpointError(f"{path} missing: this checkpoint's state is incomplete; resume from an "
                                  "earlier checkpoint or start the run again")
    with safe_open(str(path), framework="pt") as fh:
        stored = set(fh.keys())
    want = _trainable_keys(models[0])
    if stored != want:
        missing, extra = sorted(want - stored)[:3], sorted(stored - want)[:3]
        raise cio.CheckpointError(f"{path}: adapter weights do not match this run's LoRA settings "
                                  f"(missing e.g. {missing}, unexpected e.g. {extra}); resume with the "
                                  "checkpoint's own config.yaml")


KEPT_REASONS = ("save-now", "stop", "end")  # asked for by the user or closing the run: never pruned


def read_trainer_state(ckpt: str | os.PathLike) -> dict[str, Any]:
    import json
    try:
        return json.loads((Path(ckpt) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def list_checkpoints(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Each complete checkpoint of a run, oldest first: path, step, reason, time, training and
    validation loss (as known when saved) and whether it is the run's best (lowest validation loss)."""
    best = (runs.read_run_json(run_dir).get("best") or {}).get("path")
    out = []
    for ck in runs.checkpoints(run_dir):
        st = read_trainer_state(ck)
        out.append({"path": str(ck), "name": ck.name, "step": st.get("step"), "reason": st.get("reason", ""),
                    "time": st.get("time", ""), "loss": st.get("loss"), "val_loss": st.get("val_loss"),
                    "best": best is not None and Path(best).name == ck.name})
    return out


def prunable(entries: list[dict[str, Any]], keep_last: int) -> list[str]:
    """Paths to delete: periodic checkpoints beyond the newest `keep_last`, never a kept reason or the best."""
    periodic = [e for e in entries if e["reason"] not in KEPT_REASONS and not e["best"]]
    return [e["path"] for e in periodic[:-keep_last]] if keep_last > 0 else [e["path"] for e in periodic]


class Checkpoints:
    """Saves and restores a run's checkpoints (every process calls save/resume; main writes files)."""

    def __init__(self, accelerator, run_dir: Path, lelm: nn.Module, state: TrainerState, scheduler: Any, *,
                 mode: str, keep_last: int, base_dir: Path, event: Callable[..., None], log: Callable[[str], None]):
        self.acc, self.run_dir, self.lelm, self.state = accelerator, run_dir, lelm, state
        self.scheduler = scheduler
        self.mode, self.keep_last, self.base_dir = mode, keep_last, base_dir
        self.event, self.log = event, log
        self.last_step: Optional[int] = None  # step of the newest checkpoint this process saved
        # Sharded runs (FSDP / DeepSpeed) store the whole sharded model in state/ (each rank its part,
        # torch.distributed.checkpoint) and check its keys on load; the adapter-only filter is for the rest.
        if mode == "lora" and accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            accelerator.register_save_state_pre_hook(_lora_save_hook)
            accelerator.register_load_state_pre_hook(_lora_load_hook)

    def best(self) -> Optional[float]:
        """The lowest validation loss a checkpoint of this run was saved at (run.json), None before one."""
        return (runs.read_run_json(self.run_dir).get("best") or {}).get("val_loss")

    def save(self, step: int, reason: str, step_module: nn.Module, total_steps: int, *,
             loss: Optional[float] = None, val_loss: Optional[float] = None, best: bool = False) -> Path:
        acc = self.acc
        root = self.run_dir / "checkpoints"
        final = root / f"step-{step}"
        tmp = root / f".step-{step}.tmp"
        if acc.is_main_process:
            root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        self.state.step = step
        cio.save_training_state(tmp / "state", acc, self.scheduler, self.state.state_dict(), self.state.tensors())
        gathered = None
        if acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            # sharded parameters: every rank takes part in gathering the full state dict
            full = acc.get_state_dict(step_module)
            gathered = {k[len("lm."):]: v for k, v in (full or {}).items() if k.startswith("lm.")}
        if acc.is_main_process:
            inner = acc.unwrap_model(step_module).lm
            if self.mode == "lora":
                inner.save_pretrained(str(tmp), **({"state_dict": gathered} if gathered else {}))
            elif gathered:
                from core.model.checkpoint import save_pretrained as save_official
                save_official(_GatheredLeLM(self.lelm, gathered), tmp, dtype=None)
            else:
                self.lelm.save_pretrained(tmp, dtype=None)
            cio.write_json(tmp / "trainer_state.json", {
                "step": step, "total": total_steps, "mode": self.mode, "reason": reason,
                "config_hash": self.state.config_hash, "base_model": str(self.base_dir), "time": runs.now_iso(),
                "loss": loss, "val_loss": val_loss})
        acc.wait_for_everyone()  # every rank's state files are on disk before the manifest lists them
        if acc.is_main_process:
            cio.write_manifest(tmp)  # last: a checkpoint without a valid manifest is never resumed from
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            fields: dict[str, Any] = {"last_checkpoint": str(final), "step": step}
            if best:
                fields["best"] = {"path": str(final), "step": step, "val_loss": val_loss}
            runs.update_run_json(self.run_dir, **fields)
            for old in prunable(list_checkpoints(self.run_dir), self.keep_last):
                shutil.rmtree(old, ignore_errors=True)
            self.event("checkpoint", step=step, path=str(final), reason=reason, best=best, val_loss=val_loss)
            self.log(f"checkpoint step {step} -> {final} ({reason})")
        acc.wait_for_everyone()
        self.last_step = step
        return final

    def resume(self, ckpt: Path, config_hash: str) -> int:
        """Restore everything from `ckpt`; -> the step to continue from."""
        state_dir = ckpt / "state"
        if not state_dir.is_dir():
            raise cio.CheckpointError(f"{state_dir} not found: {ckpt} is not a resumable checkpoint of core.train")
        state, tensors = cio.load_training_state(state_dir, self.acc, self.scheduler,
                                                 **({"strict": False} if self.mode == "lora" else {}))
        self.state.load_state_dict(state, tensors)
        if self.state.config_hash and self.state.config_hash != config_hash:
            self.log(f"note: the config changed since {ckpt.name} was saved (hash {self.state.config_hash} -> "
                     f"{config_hash}); continuing with the new config")
            self.state.config_hash = config_hash
        return self.state.step

    def find(self, resume: Optional[str]) -> Optional[Path]:
        """The checkpoint `--resume` names ("latest": the newest intact one, None when there is none).
        Damaged checkpoints passed over are named in the log and as a `resume_fallback` event."""
        def note(msg: str) -> None:
            self.log(msg)
            self.event("resume_fallback", message=msg)

        return cio.choose_resume(self.run_dir / "checkpoints", None if resume == "latest" else resume, log=note)
