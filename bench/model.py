"""Model speed baseline: train-step frames/s + MFU (fp32, bf16 autocast), peak memory, generation frames/s.

The model is ../shared/bench/config.yaml (official structure, D256 F704 H4 L4+2, delays [0,50,50]) with
random weights; runtime root ../shared/fixtures/songgen-tiny-v2 (Qwen2 tokenizer). A training step uses
B=2, T=750 frames (993 positions with the condition prefix). MFU is measured against the matmul peak
measured in the same run, on the same device and dtype. Generation is KV-cached and guided (batch 2),
compared with a no-cache recompute of the whole sequence at every step as the baseline.

    python bench/model.py [--device cpu|cuda] [--steps 3] [--gen-frames 100]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
BENCH_CONFIG = SHARED / "bench" / "config.yaml"
RUNTIME = SHARED / "fixtures" / "songgen-tiny-v2"


def build_model(device: str):
    from core.model import LeLM
    from core.model.demo import init_weights
    from core.model.official_config import read_official_config

    cfg = read_official_config(BENCH_CONFIG, runtime_root=RUNTIME)
    model = LeLM.build(cfg, "v2")
    init_weights(model, 0)
    model.reset_rotary()
    return model.to(device)


def matmul_peak(device: str, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_flops(model, batch: int, frames: int) -> float:
    """Matmul FLOPs of one forward+backward (3 x forward); attention counted with its causal half."""
    c = model.config
    D, F, V = c.dim, c.intermediate_size, c.code_size + 1
    prefix = c.lyric_max_len + c.prompt_max_len + c.desc_max_len
    S = model.pattern.num_steps(frames)
    N = prefix + S
    layer = 4 * D * D + 3 * D * F
    per_pos = (c.num_layers + c.num_layers_sub) * layer + 3 * D * D  # both stacks + fusion MLP
    attn = (c.num_layers + c.num_layers_sub) * 2 * N * D  # QK^T and AV, causal half, per position
    heads = c.code_depth * D * V  # only on the S sequence positions
    forward = 2 * batch * (N * (per_pos + attn) + S * heads)
    return 3 * forward


def one_train_config(device: str, precision: str, steps: int, batch: int, frames: int, checkpointing: bool) -> dict:
    from core.model import build_targets, masked_ce

    torch.manual_seed(0)
    model = build_model(device)
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    codes = torch.randint(0, 16384, (batch, 3, frames), device=device)
    targets = build_targets(codes, torch.full((batch,), frames - 1, device=device))
    lyrics = ["[verse] the city lights are fading slow.we walk alone ; [chorus] hold on"] * batch
    descs = ["female, pop, sad, piano, the bpm is 120."] * batch
    autocast = torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                              enabled=precision == "bf16")
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def step() -> float:
        with autocast:
            logits, mask = model.compute_predictions(targets, lyrics, descs)
            loss = masked_ce(logits, targets, mask).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    step()  # warm-up
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    dt = (time.perf_counter() - t) / steps
    flops = train_flops(model, batch, targets.shape[-1])
    peak = matmul_peak(device, torch.bfloat16 if precision == "bf16" else torch.float32)
    mem = (torch.cuda.max_memory_allocated() if device.startswith("cuda")
           else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"precision": precision, "checkpointing": checkpointing, "frames": frames, "step_s": dt,
            "frames_per_s": batch * frames / dt,
            "achieved_tflops": flops / dt / 1e12, "peak_tflops": peak / 1e12, "mfu": flops / dt / peak,
            "peak_memory_mb": mem / 2 ** 20}


@torch.no_grad()
def generation(device: str, frames: int, baseline_frames: int) -> dict:
    from core.model.conditioners import Conditions

    torch.manual_seed(0)
    model = build_model(device).eval()
    model.generate("[verse] la la", "pop", None, max_frames=4, seed=0)  # warm-up
    sync(device)
    t = time.perf_counter()
    model.generate("[verse] the city lights are fading slow", "female, pop", None, max_frames=frames, seed=0)
    sync(device)
    cached = frames / (time.perf_counter() - t)

    # Baseline: recompute the whole sequence (prefix included) at every step, no KV cache.
    cond = Conditions(["[verse] la", None], ["pop", None], model.empty_prompt(2))
    S = model.pattern.num_steps(baseline_frames)
    seq = torch.full((2, 3, S), 16385, dtype=torch.long, device=device)
    t = time.perf_counter()
    for offset in range(1, S):
        prefix = model.condition_prefix(cond)
        logits = model.forward_steps(seq[:, :, :offset], prefix)[:, :, -1]
        seq[:, :, offset] = logits[0].argmax(-1)
    sync(device)
    recompute = baseline_frames / (time.perf_counter() - t)
    return {"frames": frames, "kv_cached_frames_per_s": cached,
            "baseline_frames": baseline_frames, "no_cache_frames_per_s": recompute}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=750)
    parser.add_argument("--bf16-cpu-frames", type=int, default=60,
                        help="T for bf16 on a CPU: CPUs without bf16 matmul units run it ~50x slower than fp32")
    parser.add_argument("--gen-frames", type=int, default=100)
    parser.add_argument("--baseline-frames", type=int, default=20)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: one config per process
    args = parser.parse_args()

    if args.one:
        precision, ckpt = args.one.split(":")
        res = one_train_config(args.device, precision, args.steps, args.batch, args.frames, ckpt == "1")
        print(json.dumps(res))
        return

    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: {BENCH_CONFIG.name} (D256 F704 H4 L4+2), B={args.batch}, T={args.frames} frames")
    rows = []
    for precision in ("fp32", "bf16"):
        frames = args.frames
        if precision == "bf16" and args.device == "cpu":
            frames = min(frames, args.bf16_cpu_frames)
            print(f"note: bf16 on this CPU: matmul peak {matmul_peak('cpu', torch.bfloat16, 256, 2) / 1e9:.1f} GFLOP/s "
                  f"vs fp32 {matmul_peak('cpu', torch.float32, 1024, 3) / 1e9:.1f}; bf16 rows use T={frames}")
        for ckpt in (False, True):
            # Each configuration in its own process, so peak memory is its own.
            out = subprocess.run([sys.executable, __file__, "--device", args.device, "--steps", str(args.steps),
                                  "--batch", str(args.batch), "--frames", str(frames),
                                  "--one", f"{precision}:{int(ckpt)}"], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'precision':<9} {'ckpt':<5} {'T':>4} {'step s':>8} {'frames/s':>9} {'TFLOP/s':>8} {'peak':>7} {'MFU':>6} {'mem MB':>8}")
    for r in rows:
        print(f"{r['precision']:<9} {str(r['checkpointing']):<5} {r['frames']:>4} {r['step_s']:8.3f} {r['frames_per_s']:9.1f} "
              f"{r['achieved_tflops']:8.4f} {r['peak_tflops']:7.3f} {r['mfu']:6.1%} {r['peak_memory_mb']:8.0f}")
    g = generation(args.device, args.gen_frames, args.baseline_frames)
    print(f"generation (guided, batch 2): KV-cached {g['kv_cached_frames_per_s']:.1f} frames/s over {g['frames']} frames; "
          f"baseline without cache {g['no_cache_frames_per_s']:.1f} frames/s over {g['baseline_frames']} frames "
          f"(speed-up {g['kv_cached_frames_per_s'] / g['no_cache_frames_per_s']:.1f}x)")


if __name__ == "__main__":
    main()
