"""The `accelerate launch` command for a run and a machine layout (one place: the studio shows it,
core.runs.store starts it, the CLI prints it).

`training.distributed` picks one of the accelerate config files shipped in assets/accelerate/:

    auto             accelerate's own default (`accelerate config`), else one process
    single           one GPU (single_gpu.yaml)
    ddp              data parallel on the GPUs of one machine (ddp.yaml)
    fsdp             FSDP2 full shard, one Llama decoder layer per unit, activation checkpointing (fsdp.yaml)
    deepspeed_zero2  DeepSpeed ZeRO-2 (deepspeed_zero2.yaml; needs the deepspeed package)
    deepspeed_zero3  DeepSpeed ZeRO-3 (deepspeed_zero3.yaml; needs the deepspeed package)
    multi_node       FSDP2 over several machines (multi_node.yaml, a template)

The layout (processes in all, machines, main machine's address and port) comes from the config
(`training.num_processes`, `num_machines`, `main_process_ip`, `main_process_port`); the machine rank
is per machine, so it is an argument: every machine runs the same command with its own rank.
"""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from core.config import ConfigError, StudioConfig

ACCELERATE_DIR = Path(__file__).resolve().parents[2] / "assets" / "accelerate"
CONFIG_FILES = {
    "single": "single_gpu.yaml",
    "ddp": "ddp.yaml",
    "fsdp": "fsdp.yaml",
    "deepspeed_zero2": "deepspeed_zero2.yaml",
    "deepspeed_zero3": "deepspeed_zero3.yaml",
    "multi_node": "multi_node.yaml",
}


def config_file(distributed: str) -> Optional[Path]:
    """The shipped accelerate config for a `training.distributed` choice (None for "auto")."""
    if distributed == "auto":
        return None
    if distributed not in CONFIG_FILES:
        raise ConfigError(f"training.distributed: {distributed!r} is not one of auto, {', '.join(CONFIG_FILES)}")
    return ACCELERATE_DIR / CONFIG_FILES[distributed]


@dataclass(frozen=True)
class Layout:
    """Where the processes run: `num_processes` in all (over all machines)."""
    distributed: str = "auto"
    num_processes: Optional[int] = None
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: Optional[str] = None
    main_process_port: Optional[int] = None
    # DeepSpeed steps and clips inside its engine: it must be told the run's accumulation and clipping
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0

    def check(self) -> None:
        """ConfigError naming the key when the layout cannot start."""
        n, m = self.num_processes, self.num_machines
        if self.distributed == "single" and (n or 1) != 1:
            raise ConfigError(f"training.num_processes: {n} processes with distributed 'single'; "
                              "choose ddp / fsdp / deepspeed_* for several GPUs")
        if m > 1:
            if self.distributed not in ("multi_node", "fsdp", "ddp", "deepspeed_zero2", "deepspeed_zero3", "auto"):
                raise ConfigError(f"training.num_machines: {m} machines need distributed multi_node, fsdp, ddp or deepspeed_*")
            if not self.main_process_ip:
                raise ConfigError("training.main_process_ip: several machines need the main machine's address "
                                  "(reachable from every machine)")
            if n is None or n % m:
                raise ConfigError(f"training.num_processes: {n} must be the processes of all machines together, "
                                  f"a multiple of training.num_machines ({m})")
        if not 0 <= self.machine_rank < m:
            raise ConfigError(f"machine rank {self.machine_rank}: must be 0..{m - 1} (0 is the main machine)")


def check_one_machine(cfg: StudioConfig) -> None:
    """ConfigError when a run asks for more than this one machine: another machine, or more processes than
    its GPUs (one process without a GPU). A shared server (a public Space) launches nothing larger."""
    import torch

    tc = cfg.training
    most = max(1, torch.cuda.device_count())
    if tc.num_machines > 1:
        raise ConfigError(f"training.num_machines: {tc.num_machines}; this server trains on its own machine only")
    if (tc.num_processes or 1) > most:
        raise ConfigError(f"training.num_processes: {tc.num_processes} processes, but this machine runs at most "
                          f"{most} ({torch.cuda.device_count()} GPU(s)); leave it empty")


def layout_for(cfg: StudioConfig, machine_rank: int = 0, num_processes: Optional[int] = None) -> Layout:
    """The layout a config asks for (`num_processes` overrides training.num_processes)."""
    tc = cfg.training
    return Layout(distributed=tc.distributed, num_processes=num_processes or tc.num_processes,
                  num_machines=tc.num_machines, machine_rank=machine_rank,
                  main_process_ip=tc.main_process_ip, main_process_port=tc.main_process_port,
                  gradient_accumulation_steps=tc.gradient_accumulation_steps, max_grad_norm=tc.max_grad_norm)


def launch_argv(config_path: str | Path, layout: Layout = Layout(), *, resume: bool | str = False,
                multi_gpu: bool = False, executable: Optional[str] = "accelerate") -> list[str]:
    """argv of `accelerate launch [--config_file ...] [layout] -m core.train --config <config> [--resume [CKPT]]`.

    `executable=None` runs this interpreter's accelerate (`python -m accelerate.commands.launch`, no PATH
    lookup); `resume` True continues from the latest checkpoint, a path from that checkpoint.
    """
    layout.check()
    head = ["accelerate", "launch"] if executable else [sys.executable, "-m", "accelerate.commands.launch"]
    opts: list[str] = []
    cfile = config_file(layout.distributed)
    if cfile is not None:
        opts += ["--config_file", str(cfile)]
    if multi_gpu and layout.distributed == "auto":
        opts.append("--multi_gpu")
    if layout.num_processes:
        opts += ["--num_processes", str(layout.num_processes)]
    if layout.distributed.startswith("deepspeed"):
        opts += ["--gradient_accumulation_steps", str(layout.gradient_accumulation_steps)]
        if layout.max_grad_norm > 0:
            opts += ["--gradient_clipping", f"{layout.max_grad_norm:g}"]
    if layout.num_machines > 1 or layout.distributed == "multi_node":
        opts += ["--num_machines", str(layout.num_machines), "--machine_rank", str(layout.machine_rank)]
        if layout.main_process_ip:
            opts += ["--main_process_ip", layout.main_process_ip]
        opts += ["--main_process_port", str(layout.main_process_port or 29500)]
    elif layout.main_process_port:
        opts += ["--main_process_port", str(layout.main_process_port)]
    tail = ["-m", "core.train", "--config", str(Path(config_path).resolve())]
    if resume:
        tail += ["--resume"] + ([] if resume is True or resume == "latest" else [str(resume)])
    return head + opts + tail


def launch_command(config_path: str | Path, layout: Layout = Layout(), **kw) -> str:
    """The shell form of `launch_argv` (what the studio shows and run.json records)."""
    return shlex.join(launch_argv(config_path, layout, **kw))


def machine_commands(config_path: str | Path, cfg: StudioConfig, **kw) -> list[str]:
    """One command per machine (rank 0 first) for the config's layout."""
    return [launch_command(config_path, layout_for(cfg, machine_rank=r), **kw)
            for r in range(cfg.training.num_machines)]
