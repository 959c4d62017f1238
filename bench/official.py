"""The official code's training step and guided generation, timed in its own Python: the baseline
bench/model.py measures against.

SongGeneration's authors released no training code, so "the official training step" is what a user would write
around their model: `LmModel.prepare_condition_tensors` (train mode) + `compute_predictions` (full fp32 logits
of the three streams) + cross-entropy over each stream's valid targets, averaged over the streams (what our
compute_loss computes) + backward + AdamW (fused, as our trainer's: the ratio is then the model code's alone).
Attention is the official CPU path (its Llama without flash-attn 2: eager attention).

It runs in a Python that can import the official code (`--official DIR`: a checkout of
tencent-ailab/SongGeneration, whose `codeclm` needs transformers 4.37, omegaconf and flashy;
`--official-python`), which is why it imports nothing of ours. bench/model.py writes the weights and the
targets it built for our model (same seed) to a safetensors file, so both implementations start from the same
numbers, and compares the losses of a step without condition dropout (both sides' dropout draws differ).

`--generate N`: the official `LmModel.generate` (guided, its own KV cache, top-k sampling) for N frames with our
sampling defaults, the lyrics and description of our generation child and no prompt audio. Its one CUDA call (the
prompt tokens' `.cuda()` in eval-mode `prepare_condition_tensors`) is made a no-op, so it runs on the CPU.

    <python with the official requirements> bench/official.py --official DIR --config CONFIG.yaml
        --runtime RUNTIME_ROOT --state STATE.safetensors [--steps 3] [--warmup 3] [--threads N]
Prints one JSON line: step_s (median), loss_nodrop, peak_memory_mb; with --generate: frames_per_s, frames_per_cpu_s. `measure` and `report` are bench/model.py's
side (stdlib only here, so that both Pythons can import this file).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

LYRICS = "[verse] the city lights are fading slow.we walk alone ; [chorus] hold on"  # bench/model.py's
DESC = "female, pop, sad, piano, the bpm is 120."
EMPTY = 16385


# ------------------------------------------------------------------------------- bench/model.py's side
def measure(python: str, official: str, config: Path, runtime: Path, state: Path, steps: int, warmup: int,
            threads: int, generate: int = 0, sampling: Optional[dict] = None) -> dict:
    """One official child (its own process, like every child of bench/model.py) -> its JSON line."""
    cmd = [python, __file__, "--official", official, "--config", str(config), "--runtime", str(runtime),
           "--state", str(state), "--steps", str(steps), "--warmup", str(warmup), "--threads", str(threads),
           "--generate", str(generate), "--sampling", json.dumps(sampling or {})]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the official step failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(runs: dict, flop_seconds: float) -> None:
    """The official fp32 step beside ours and the baseline's (medians over rounds), and the check that the
    official code and ours computed the same loss from the same weights and targets."""
    def med(impl: str, key: str = "step_s") -> float:
        return statistics.median(r[key] for r in runs[impl])

    off, ours = med("official"), med("ours")
    print(f"  the official code's fp32 step (measured in this run): {off:.2f} s, {flop_seconds / off:.1%} of the "
          f"fp32 peak, peak RSS {med('official', 'peak_memory_mb'):.0f} MB; ours {off / ours:.2f}x it, "
          f"the baseline {off / med('baseline'):.2f}x")
    a, b = runs["official"][0]["loss_nodrop"], runs["ours"][0]["loss_nodrop"]
    same = abs(a - b) <= 1e-4 * abs(a)
    print(f"  {'' if same else 'WARNING: '}loss of the same weights and targets without condition dropout: official "
          f"{a:.6f}, ours {b:.6f}{' (the same)' if same else ' (they differ)'}")


def report_generation(runs: dict) -> None:
    """The official generation beside ours and the baseline's (medians over rounds)."""
    def med(impl: str, key: str = "frames_per_s") -> float:
        return statistics.median(r[key] for r in runs[impl])

    off, offc = med("official"), med("official", "frames_per_cpu_s")
    print(f"  the official code's generation (measured in this run): {off:.2f} frames/s, per CPU second {offc:.2f}; "
          f"ours {med('ours') / off:.2f}x it ({med('ours', 'frames_per_cpu_s') / offc:.2f}x per CPU second), the "
          f"baseline {med('baseline') / off:.2f}x")


# ------------------------------------------------------------------------------- the official Python's side
def build(official: str, config: str, runtime: str, state_path: str):
    import torch
    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    sys.path.insert(0, official)
    from codeclm.models.builders import get_lm_model

    # The resolvers the official generate.py registers; relative paths in the config are the runtime root's.
    for name, fn in (("eval", lambda x: eval(x)), ("load_yaml", lambda x: list(OmegaConf.load(x)))):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    here = os.getcwd()
    os.chdir(runtime)
    try:
        cfg = OmegaConf.load(config)
        OmegaConf.resolve(cfg)
        model = get_lm_model(cfg, version="v2")
    finally:
        os.chdir(here)
    state = load_file(state_path)
    targets = state.pop("bench.targets")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "rotary" not in k]:
        raise SystemExit(f"the official model does not take these weights: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model.float().train(), targets, cfg


def generate(model, cfg, frames: int, sampling: dict) -> dict:
    import torch

    torch.Tensor.cuda = lambda self, *a, **k: self  # its one CUDA call: the prompt tokens, in eval mode
    model.eval()
    prompt = torch.full((1, 3, int(cfg.prompt_len * cfg.audio_tokenizer_frame_rate)), EMPTY, dtype=torch.long)
    kw = {"use_sampling": True, "temp": sampling.get("temperature", 1.0), "top_k": sampling.get("top_k", 50),
          "top_p": sampling.get("top_p", 0.0), "cfg_coef": sampling.get("cfg_coef", 1.5),
          "record_window": sampling.get("record_window", 50)}
    with torch.no_grad():
        model.generate(texts=["[verse] la la"], descriptions=["pop"], audio_qt_embs=prompt, max_gen_len=4, **kw)
        torch.manual_seed(0)
        t, c = time.perf_counter(), time.process_time()
        codes = model.generate(texts=[LYRICS], descriptions=["female, pop"], audio_qt_embs=prompt,
                               max_gen_len=frames, **kw)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    if bool((codes[..., -1] >= EMPTY - 1).all()):  # EOS or its fill at the end: it stopped early, the rate would lie
        raise SystemExit("the official generation stopped at EOS before the last frame: try other --gen-frames")
    return {"frames_per_s": frames / wall, "frames_per_cpu_s": frames / cpu}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--runtime", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--generate", type=int, default=0, help="frames to generate instead of training steps")
    p.add_argument("--sampling", default="{}", help="cfg_coef, temperature, top_k, top_p, record_window (JSON)")
    args = p.parse_args()

    import torch
    import torch.nn.functional as F

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, targets, cfg = build(args.official, args.config, args.runtime, args.state)
    if args.generate:
        print(json.dumps(generate(model, cfg, args.generate, json.loads(args.sampling))))
        return
    B, K, T = targets.shape
    prompt_frames = int(cfg.prompt_len * cfg.audio_tokenizer_frame_rate)
    prompt = torch.full((B, K, prompt_frames), EMPTY, dtype=torch.long)  # no prompt audio, as ours
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), fused=True)

    def loss_of() -> torch.Tensor:
        cond = model.prepare_condition_tensors(batch_size=B, text=[LYRICS] * B, descriptions=[DESC] * B,
                                               audio_qt_emb=prompt)
        out = model.compute_predictions(targets, cond)
        valid = out.mask & (targets != EMPTY)
        losses = [F.cross_entropy(out.logits[:, q][valid[:, q]].float(), targets[:, q][valid[:, q]])
                  for q in range(K)]
        return torch.stack(losses).mean()

    def step() -> float:
        loss = loss_of()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    # The compared loss: the first step's, with condition dropout off (its draws are the implementation's own).
    # (The official cfg dropout draws in any mode: its p is set to 0; the attribute dropout is off in eval.)
    cfg_p, model.cfg_dropout.p = model.cfg_dropout.p, 0.0
    model.att_dropout.eval()
    loss0 = step()
    model.cfg_dropout.p = cfg_p
    model.att_dropout.train()
    for _ in range(args.warmup - 1):
        step()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    print(json.dumps({"step_s": statistics.median(times), "loss_nodrop": loss0,
                      "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
