"""Training throughput, MFU and peak memory: full vs LoRA, with and without gradient checkpointing.

    python bench/train.py [--steps 3] [--batch 2] [--frames 750] [--threads N]

CPU config (stated in the output): `/work/shared/bench/config.yaml` (official structure, D256 F704 H4,
4+2 layers, delays [0, 50, 50], lyrics 120, prompt 2 s, description 20) with the Qwen2 tokenizer of
`/work/shared/fixtures/songgen-tiny-v2` as runtime root, random (demo-style) weights; batch 2 x 750
frames (993 positions per sample incl. the 192-position condition prefix); fp32; the trainer's own
code path (`core.train.build_model` / `core.training.evaluate.BatchLoss` / `make_optimizer`), one process.

Each configuration runs in a fresh subprocess, so its peak RSS (`ru_maxrss`) is its own; the RSS
after building the model is printed too, so "training overhead" = peak - after-build.
FLOPs per step are counted with `torch.utils.flop_counter.FlopCounterMode` on one step (every
matmul, attention included); MFU = FLOPs per step / step time / peak, where the peak is a 2048^3 fp32
matmul timed in the same child process just before and after its steps, same thread count.

Last, a GPU memory estimate for base and large at full song length (formula printed with the numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = ROOT.parent / "shared"  # the project's shared/ folder sits beside the repository
BENCH_CONFIG = SHARED / "bench" / "config.yaml"
RUNTIME = SHARED / "fixtures" / "songgen-tiny-v2"
C = 16384


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def matmul_peak(threads: int, n: int = 2048, reps: int = 5) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def build_checkpoint(out: Path) -> Path:
    import torch

    from core.model import LeLM
    from core.model.demo import init_weights
    from core.model.official_config import read_official_config

    ckpt = out / "songgen_bench"
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "config.yaml").write_text(BENCH_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    model = LeLM.build(read_official_config(ckpt / "config.yaml", runtime_root=RUNTIME), "v2")
    init_weights(model, 1)
    model.reset_rotary()
    model.save_pretrained(ckpt, dtype=torch.float32)
    return ckpt


def child(args) -> None:
    """One configuration: prints a JSON line with its figures."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from core.config import parse_config
    from core.model import EMPTY
    from core.training.evaluate import BatchLoss
    from core.training.trainer import build_model, count_parameters, make_optimizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = parse_config({"paths": {"base_model_path": args.ckpt, "runtime_path": str(RUNTIME)},
                        "training": {"type": args.mode, "gradient_checkpointing": bool(args.gc),
                                     "learning_rate": 1e-4}})
    model, lelm, _ = build_model(cfg)
    trainable, total = count_parameters(model)
    step = BatchLoss(model, lelm).train()
    opt = make_optimizer(cfg, model)
    rss_built = rss_mb()
    B, T = args.batch, args.frames
    g = torch.Generator().manual_seed(0)
    batch = {"codes": torch.randint(0, C, (B, 3, T), generator=g), "lengths": torch.full((B,), T),
             "reaches_end": torch.ones(B, dtype=torch.bool),
             "prompt": torch.randint(0, C, (B, 3, lelm.config.prompt_frames), generator=g),
             "lyrics": ["[verse] la la la.we sing along ; [chorus] hold on to me"] * B,
             "descriptions": ["[Musicality-very-high], female, pop"] * B}
    assert int((batch["codes"] == EMPTY).sum()) == 0

    def one() -> float:
        t = time.perf_counter()
        per, _ = step(**batch)
        per.mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    one()  # warm-up (allocator, Adam state)
    peak_before = matmul_peak(args.threads, reps=3)
    times = [one() for _ in range(args.steps)]
    peak_after = matmul_peak(args.threads, reps=3)
    with FlopCounterMode(display=False) as fc:
        one()
    flops = fc.get_total_flops()
    dt = min(times)
    tokens = B * T * 3
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": args.mode, "gc": bool(args.gc), "trainable": trainable, "total": total,
                      "step_s": dt, "matmul_peak": max(peak_before, peak_after), "tokens_per_s": tokens / dt, "flops_per_step": flops,
                      "achieved_flops": flops / dt, "rss_built_mb": rss_built, "peak_rss_mb": peak_kb / 1024}))


def param_count(D: int, F: int, L: int, Ls: int, desc_rows: int) -> tuple[int, int]:
    """(total, trainable in full mode) from the state-dict layout of lelm.md §1.8."""
    layers = (L + Ls) * (4 * D * D + 3 * D * F + 2 * D) + 2 * D
    tables = 7 * (C + 2) * D + 6 * (C + 1) * D + 151659 * D + 200 * D + desc_rows * D
    fusion = 2 * D * D + D + D * D + D
    total = layers + tables + fusion + 2 * D + 2 * D
    unused = 2 * (C + 1) * D + (C + 1) * D + (C + 2) * D + 2 * D
    return total, total - unused


def gpu_estimate() -> list[str]:
    from core.training.estimate import activation_memory

    GB = 1e9
    out = ["GPU memory estimate at full song length (B=1, bf16 autocast, fp32 master weights, AdamW),",
           "formula of core.training.estimate.activation_memory / estimate_memory:",
           "  S = 952 prefix + T + 251 (T = max_dur*25), S_out = T + 251 positions with 3 x 16385 logits",
           "  weights 4N; full: + grads 4Nt + AdamW 8Nt; LoRA: + 16 bytes per adapter parameter",
           "  activations/layer (no checkpointing, SDPA: no S^2 term) = 2 bytes * S * (8D + 4F)",
           "  with checkpointing: 2 bytes * S * D per layer + one layer's activations",
           "  logits + CE = 3 * S_out * 16385 * 10 bytes (bf16 logits, fp32 copy, fp32 grad)"]
    for name, D, F, L, Ls, max_dur, desc_rows in (("base", 1536, 8960, 28, 12, 150, 151646),
                                                   ("large", 2048, 11008, 36, 12, 270, 151646)):
        N, Nt = param_count(D, F, L, Ls, desc_rows)
        T = max_dur * 25
        S, S_out = 952 + T + 251, T + 251
        lora_params = 16 * (L + Ls) * (8 * D + 3 * (D + F))  # r=16 on q,k,v,o,gate,up,down of both stacks
        w = 4 * N
        rows = {}
        for gc in (False, True):
            acts, logits = activation_memory(D, F, L + Ls, S, S_out, 1, gc)
            tag = "grad ckpt" if gc else "no ckpt"
            rows[f"full, {tag}"] = w + 12 * Nt + acts + logits
            rows[f"LoRA r=16, {tag}"] = w + 16 * lora_params + acts + logits
        out.append(f"  {name}: D{D} F{F} L{L}+{Ls}, N={N / 1e9:.2f}B (trainable in full mode {Nt / 1e9:.2f}B, "
                   f"LoRA r=16 {lora_params / 1e6:.1f}M), T={T} frames, S={S}")
        for k, v in rows.items():
            out.append(f"    {k:<24} {v / GB:7.1f} GB")
    out.append("  -> full finetuning of base/large needs several GPUs with sharded states (FSDP / DeepSpeed ZeRO);"
               " LoRA on base fits one 24 GB card with gradient checkpointing, LoRA on large needs ~28 GB.")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=750)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--mode", default="full")
    ap.add_argument("--gc", type=int, default=0)
    ap.add_argument("--ckpt", default="")
    args = ap.parse_args()
    if args.child:
        child(args)
        return 0
    import torch

    print(f"torch {torch.__version__}, {args.threads} threads, CPU: "
          f"{next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('model name')), '?')}")
    print(f"config: {BENCH_CONFIG} (runtime {RUNTIME}), batch {args.batch} x {args.frames} frames, fp32, "
          f"best of {args.steps} steps after 1 warm-up")
    peak = matmul_peak(args.threads)
    print(f"matmul peak (fp32 2048^3, best of 5): {peak / 1e9:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = build_checkpoint(Path(tmp))
        results = []
        for mode in ("full", "lora"):
            for gc in (0, 1):
                cmd = [sys.executable, __file__, "--child", "--mode", mode, "--gc", str(gc), "--ckpt", str(ckpt),
                       "--steps", str(args.steps), "--batch", str(args.batch), "--frames", str(args.frames),
                       "--threads", str(args.threads)]
                res = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
                if res.returncode != 0:
                    print(res.stdout, res.stderr, file=sys.stderr)
                    return 1
                results.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"\n{'config':<16} {'trainable':>12} {'step s':>8} {'tokens/s':>9} {'GFLOP/step':>11} {'MFU':>6} "
          f"{'peak RSS MB':>12} {'after build':>12} {'overhead':>9}")
    for r in results:
        name = f"{r['mode']}{' +ckpt' if r['gc'] else ''}"
        print(f"{name:<16} {r['trainable']:>12,} {r['step_s']:>8.2f} {r['tokens_per_s']:>9.0f} "
              f"{r['flops_per_step'] / 1e9:>11.1f} {100 * r['achieved_flops'] / r['matmul_peak']:>5.1f}% "
              f"{r['peak_rss_mb']:>12.0f} {r['rss_built_mb']:>12.0f} {r['peak_rss_mb'] - r['rss_built_mb']:>9.0f}")
    print("tokens = frames x 3 streams; MFU = counted FLOPs / best step time / the matmul peak measured in the same\n"
          "child just before and after its steps (best of both), so a machine shared with other jobs skews it less.\n")
    print("\n".join(gpu_estimate()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
