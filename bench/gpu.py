"""GPU bench: official base and large sizes, random weights, at 30 / 150 / 270 s of audio.

    python bench/gpu.py [--sizes base,large] [--seconds 30,150,270] [--steps 2] [--gen-frames 200]
                        [--runtime ../shared/fixtures/songgen-tiny-v2] [--out bench/gpu.json]

The models are built exactly as a real checkpoint is: an official-layout config.yaml (the tiny fixture's
file with the `lm` dims, delays, text lengths and durations of the released configs, SIZES below) read
by core.model.official_config and built by LeLM.build (real Qwen2 vocab from the runtime root, so the
text tables have their real 151k rows); weights are random (core.model.demo.init_weights).

Per size and length, batch 1, bf16 autocast, gradient checkpointing, the trainer's optimizer (fused AdamW):
  - LoRA step (the trainer's default lora section, core.model.lora.apply_lora) and full step: seconds, frames/s (= song frames per
    second) and tokens/s (3 tokens a frame), MFU = model FLOPs (3 x forward, no recompute) / time / the
    measured bf16 matmul peak of this card; peak memory (torch.cuda.max_memory_allocated) beside
    core.training.estimate's figure for the same setting. A setting that does not fit prints OOM.
  - mode "lora-compiled" / "full-compiled" (not in the default --modes): the same step with training.compile
    (core.model.compiled); its first (warm-up) step pays the compile.
  - mode "qlora": the LoRA step on a bf16 model whose decoder linears are NF4 (training.base_quant: nf4,
    core.training.setup.quantize_base), built after the other rows of the size so its peak is its own.
  - generation frames/s for one song (guided, top-k): eager step vs the compiled CUDA-graph step, and
    4 songs in one generate_batch pass (compiled step), in total frames/s; peak memory of one song with
    the float (model dtype) cache and the int8 cache (`cache="int8"`) beside core.training.estimate's
    generation_memory.
Needs a CUDA device; on anything else it says so and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
RUNTIME = SHARED / "fixtures" / "songgen-tiny-v2"
TEMPLATE = RUNTIME / "ckpt" / "songgen_tiny_v2" / "config.yaml"

# Released configs (../shared/reference/lelm.md section 2.3/2.4): D/F/H/L/Ls, RoPE, positions, length.
COMMON = {"delays": [0, 250, 250], "prompt_len": 10, "frame_rate": 25, "lyric_max_len": 600, "desc_max_len": 100}
SIZES = {
    "base": {"dim": 1536, "intermediate_size": 8960, "num_heads": 12, "num_layers": 28, "num_layers_sub": 12,
             "max_position_embeddings": 8196, "max_position_embeddings_sub": 10000,
             "rope_theta": 100000.0, "rope_theta_sub": 500000.0, "max_dur": 270, "version": "v1"},
    "large": {"dim": 2048, "intermediate_size": 11008, "num_heads": 16, "num_layers": 36, "num_layers_sub": 12,
              "max_position_embeddings": 10000, "max_position_embeddings_sub": 10000,
              "rope_theta": 500000.0, "rope_theta_sub": 500000.0, "max_dur": 270, "version": "v2"},
}
LM_KEYS = ("dim", "intermediate_size", "num_heads", "num_layers", "num_layers_sub", "max_position_embeddings",
           "max_position_embeddings_sub", "rope_theta", "rope_theta_sub")


def size_config_text(size: str) -> str:
    """The official-layout config.yaml text of one size (interpolations kept for the config reader)."""
    spec = SIZES[size]
    cfg = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    for key in LM_KEYS:
        cfg["lm"][key] = spec[key]
    cfg["max_dur"] = spec["max_dur"]
    cfg["prompt_len"] = COMMON["prompt_len"]
    cfg["audio_tokenizer_frame_rate"] = cfg["audio_tokenizer_frame_rate_sep"] = COMMON["frame_rate"]
    cfg["codebooks_pattern"]["delay"]["delays"] = list(COMMON["delays"])
    cfg["conditioners"]["description"]["QwTokenizer"]["max_len"] = COMMON["lyric_max_len"]
    cfg["conditioners"]["type_info"]["QwTextTokenizer"]["max_len"] = COMMON["desc_max_len"]
    return yaml.safe_dump(cfg, sort_keys=False)


def size_config(size: str, runtime: Path = RUNTIME, folder: Path | None = None):
    """-> OfficialConfig of `size`, read by the same code as a downloaded checkpoint's config.yaml."""
    from core.model.official_config import read_official_config

    folder = folder or Path(tempfile.mkdtemp(prefix=f"songgen-{size}-"))
    path = folder / "config.yaml"
    path.write_text(size_config_text(size), encoding="utf-8")
    return read_official_config(path, runtime_root=runtime)


def build(size: str, device: str, runtime: Path):
    import torch
    from core.model import LeLM
    from core.model.demo import init_weights

    oc = size_config(size, runtime)
    with torch.device(device):
        model = LeLM.build(oc, SIZES[size]["version"])
    init_weights(model, 0)
    model.reset_rotary()
    return model


def matmul_peak_bf16(n: int = 8192, reps: int = 20) -> float:
    import torch
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def train_row(model, mode: str, frames: int, steps: int, peak: float) -> dict:
    import torch
    from core.training.estimate import train_step_flops
    from core.model import build_targets
    from core.training.optimizers import build_optimizer

    lelm = model
    compiled = mode.endswith("-compiled")
    mode = mode.removesuffix("-compiled")
    if mode in ("lora", "qlora"):
        from core.config import StudioConfig
        from core.model.lora import apply_lora
        for p in lelm.parameters():
            p.requires_grad_(False)
        model = apply_lora(StudioConfig(), lelm)  # the trainer's defaults (lora.r, targets, both stacks)
    else:
        unused = set(lelm.unused_parameter_names())
        for n, p in lelm.named_parameters():
            p.requires_grad_(n not in unused)
    lelm.gradient_checkpointing_enable()
    lelm.train()
    if compiled:
        from core.model.compiled import compile_stacks
        compile_stacks(lelm, print)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer("adamw", [{"params": params}], lr=1e-5, device="cuda")
    targets = build_targets(torch.randint(0, 16384, (1, 3, frames), device="cuda"), torch.tensor([frames - 1]))
    out = {"mode": mode + ("-compiled" if compiled else ""), "frames": frames,
           "trainable": sum(p.numel() for p in params)}
    torch.cuda.reset_peak_memory_stats()
    try:
        times = []
        for i in range(steps + 1):
            torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = lelm.compute_loss(targets, ["[verse] la la la"], ["female, pop"])[0].mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            if i:  # the first step warms up kernels and allocates optimizer state
                times.append(time.perf_counter() - t)
        step = sorted(times)[len(times) // 2]
        out.update(step_s=step, frames_per_s=frames / step, tokens_per_s=frames * lelm.depth / step, mfu=train_step_flops(lelm.config, frames, 1) / step / peak,
                   peak_gb=torch.cuda.max_memory_allocated() / 1e9)
    except torch.cuda.OutOfMemoryError:
        out.update(oom=True, peak_gb=torch.cuda.max_memory_allocated() / 1e9)
    finally:
        del opt
        lelm.zero_grad(set_to_none=True)  # an OOM mid-backward leaves gradients that would crowd the next row
        if compiled:
            from core.model.compiled import uncompile_stacks
            uncompile_stacks(lelm)
        if mode in ("lora", "qlora"):
            model.unload()  # back to the plain LeLM for the next row
        torch.cuda.empty_cache()
    return out


def estimate_gb(oc, n_params: int, mode: str, frames: int) -> float:
    from core.config import LoraConfig
    from core.training.estimate import estimate_memory_for
    quant = mode == "qlora"
    return estimate_memory_for(oc, n_params, mode="lora" if quant else mode, frames=frames, batch=1, checkpointing=True,
                               act_bytes=2, lora_r=LoraConfig().r, lora_targets=tuple(LoraConfig().target_modules),
                               optimizer="adamw", weight_bytes=2 if quant else 4,
                               base_quant="nf4" if quant else "none")["total_gb"]


def build_qlora(size: str, runtime: Path):
    """The size's model in bf16 with NF4 decoder linears, as a training.base_quant: nf4 run builds it."""
    import torch
    from core.training.setup import quantize_base

    model = build(size, "cuda", runtime).to(torch.bfloat16)
    quantize_base(model, "nf4", torch.bfloat16)
    torch.cuda.empty_cache()
    return model


def generation_row(model, frames: int) -> dict:
    import torch
    model.eval()
    out = {}
    for name, compile in (("eager", False), ("compiled", True)):
        model.generate("[verse] la", "pop", None, max_frames=8, seed=0, cache="static", compile=compile)  # warm-up
        torch.cuda.synchronize()
        t = time.perf_counter()
        model.generate("[verse] la la la", "female, pop", None, max_frames=frames, seed=0, cache="static",
                       compile=compile)
        torch.cuda.synchronize()
        out[name] = frames / (time.perf_counter() - t)
    n = 4
    batch_kw = dict(seeds=list(range(n)), cache="static", compile=True)
    model.generate_batch(["[verse] la"] * n, ["pop"] * n, None, max_frames=8, **batch_kw)  # warm-up: 2n-row graph
    torch.cuda.synchronize()
    t = time.perf_counter()
    model.generate_batch(["[verse] la la la"] * n, ["female, pop"] * n, None, max_frames=frames, **batch_kw)
    torch.cuda.synchronize()
    out["batch4_compiled"] = n * frames / (time.perf_counter() - t)
    for cache in ("static", "int8"):  # peak memory of one song, float (model dtype) vs int8 KV cache (eager)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        model.generate("[verse] la la la", "female, pop", None, max_frames=frames, seed=0, cache=cache, compile=False)
        torch.cuda.synchronize()
        out[f"{cache}_eager"] = frames / (time.perf_counter() - t)
        out[f"{cache}_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return out


def train_rows(model, modes: list[str], seconds: list[int], steps: int, peak: float, size: str, n: int) -> list[dict]:
    rows = []
    for sec in seconds:
        frames = sec * model.config.frame_rate
        for mode in modes:
            r = train_row(model, mode, frames, steps, peak)
            r.update(size=size, seconds=sec, estimate_gb=estimate_gb(model.config, n, mode.removesuffix("-compiled"),
                                                                     frames))
            rows.append(r)
            if r.get("oom"):
                print(f"{sec:>5}s {mode:<5} {'OOM':>7} {'':>9} {'':>9} {'':>6} {r['peak_gb']:8.1f} "
                      f"{r['estimate_gb']:11.1f}")
            else:
                print(f"{sec:>5}s {mode:<5} {r['step_s']:7.2f} {r['frames_per_s']:9.0f} {r['tokens_per_s']:9.0f} "
                      f"{r['mfu']:6.1%} {r['peak_gb']:8.1f} {r['estimate_gb']:11.1f}")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="base,large")
    p.add_argument("--seconds", default="30,150,270")
    p.add_argument("--modes", default="lora,full,qlora")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--gen-frames", type=int, default=200)
    p.add_argument("--runtime", default=str(RUNTIME))
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = p.parse_args()

    import torch
    from core.training.estimate import generation_memory
    if not torch.cuda.is_available():
        print("bench/gpu.py needs a CUDA GPU (none visible to torch here); nothing was measured. "
              "See bench/README.md for how to run it on a GPU machine.", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    peak = matmul_peak_bf16()
    dev = torch.cuda.get_device_name()
    print(f"{dev}, torch {torch.__version__}; measured bf16 matmul peak {peak / 1e12:.0f} TFLOP/s")
    rows = []
    for size in args.sizes.split(","):
        t0 = time.perf_counter()
        model = build(size, "cuda", Path(args.runtime))
        n = model.num_parameters()
        print(f"\n{size}: {n / 1e9:.3f} B parameters (built in {time.perf_counter() - t0:.0f} s)")
        print(f"{'audio':>6} {'mode':<5} {'step s':>7} {'frames/s':>9} {'tokens/s':>9} {'MFU':>6} {'peak GB':>8} "
              f"{'estimate GB':>11}")
        modes = args.modes.split(",")
        seconds = [int(s) for s in args.seconds.split(",")]
        rows += train_rows(model, [m for m in modes if m != "qlora"], seconds, args.steps, peak, size, n)
        g = generation_row(model, args.gen_frames)
        gen_estimate, gen_int8 = (generation_memory(model.config, n, args.gen_frames, weight_bytes=4, kv_cache=kv)
                                  for kv in ("auto", "int8"))
        g.update(estimate_gb=gen_estimate["total_gb"], estimate_int8_gb=gen_int8["total_gb"])
        rows.append({"size": size, "generation_frames": args.gen_frames, **g})
        print(f"generation ({args.gen_frames} frames, guided): eager {g['eager']:.1f} frames/s, "
              f"compiled CUDA graph {g['compiled']:.1f} frames/s ({g['compiled'] / g['eager']:.1f}x); "
              f"4 songs in one pass (compiled) {g['batch4_compiled']:.1f} frames/s in total; peak GB float cache "
              f"{g['static_peak_gb']:.1f} vs int8 cache {g['int8_peak_gb']:.1f} ({g['int8_eager']:.1f} frames/s); "
              f"estimate {gen_estimate['total_gb']:.1f} / {gen_int8['total_gb']:.1f} (fp32 weights)")
        del model
        torch.cuda.empty_cache()
        if "qlora" in modes:
            model = build_qlora(size, Path(args.runtime))
            rows += train_rows(model, ["qlora"], seconds, args.steps, peak, size, n)
            del model
            torch.cuda.empty_cache()
    if args.out:
        Path(args.out).write_text(json.dumps({"device": dev, "peak_tflops": peak / 1e12, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
