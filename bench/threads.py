"""OpenMP wait policy on a shared CPU: demo-model guided generation with idle threads spinning a short bounded
while and then sleeping (GOMP_SPINCOUNT=3000, what `import core` sets outside a Space; core/threads.py), beside
sleeping at once (PASSIVE, core's choice in a Space) and spinning for good (ACTIVE), each in a fresh process (the
policy is read when torch loads), alternating.

    python bench/threads.py [--frames 50] [--threads 2] [--repeats 3] [--busy 2] [--model demo|d1024]

`--busy N` starts N pure-Python busy loops for the duration, standing in for the other work a
studio machine has (the server, a trainer, a browser); 0 measures a quiet machine. `--model d1024`: the
bench's D1024 proportions (random weights) instead of the demo model."""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
import core  # the policy under test is already in the environment (core keeps a user's setting)
if sys.argv[4] == "demo":
    from core.model import LeLM
    from core.training.demo_pretrain import ensure_demo_model
    m = LeLM.from_pretrained(ensure_demo_model(sys.argv[3])).eval()
else:
    sys.path.insert(0, sys.argv[5])
    import model as bench_model
    m = bench_model.build_model("cpu", bench_model.MODELS[sys.argv[4]][0]).eval()
lyr = "[verse] the city lights are calling me home. i walk the empty streets alone ; [chorus] sing it loud"
m.generate(lyr, "female, pop", None, max_frames=5, cfg_coef=1.5, seed=0)  # warm-up
t = time.perf_counter()
m.generate(lyr, "female, pop", None, max_frames=int(sys.argv[2]), cfg_coef=1.5, seed=0)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def _spin(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


POLICIES = {  # label -> the OpenMP environment of the child
    "a short bounded spin (GOMP_SPINCOUNT=3000, ours)": {"GOMP_SPINCOUNT": "3000"},
    "sleeping (PASSIVE)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spinning (ACTIVE)": {"OMP_WAIT_POLICY": "ACTIVE"},
}


def run(policy: str, frames: int, threads: int, ws: str, model: str = "demo") -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(POLICIES[policy], PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(frames), ws, model, str(ROOT / "bench")],
                         env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--busy", type=int, default=2, help="busy-loop processes alongside (0: quiet machine)")
    ap.add_argument("--model", default="demo", choices=("demo", "d256", "d1024"))
    args = ap.parse_args()
    stop = mp.Event()
    busy = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.busy)]
    for p in busy:
        p.start()
    times: dict[str, list[float]] = {policy: [] for policy in POLICIES}
    try:
        with tempfile.TemporaryDirectory() as ws:
            run("sleeping (PASSIVE)", 2, 1, ws, args.model)  # creates the demo model once, outside the timings
            for _ in range(args.repeats):
                for policy in times:
                    times[policy].append(run(policy, args.frames, args.threads, ws, args.model))
    finally:
        stop.set()
        for p in busy:
            p.join(timeout=5)
    load = os.getloadavg()[0]
    print(f"{args.model} model, {args.frames} frames guided, {args.threads} torch threads, {args.busy} busy "
          f"processes, {os.cpu_count()} CPUs, load {load:.1f}; median of {args.repeats}, alternating")
    ours = statistics.median(next(iter(times.values())))
    for policy, ts in times.items():
        t = statistics.median(ts)
        print(f"  {policy:<50} {t:8.2f} s   {t / ours:5.2f}x ours")


if __name__ == "__main__":
    main()
