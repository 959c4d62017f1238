"""UI figures: time from `python app.py` to a served page, and the cost of one poll tick of the
Train tab on a run whose metrics.jsonl has 100k lines (incremental read vs a full re-read baseline,
both measured here, in the same run).

    python bench/ui.py [--lines 100000] [--ticks 20]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_page(workspace: Path, timeout: float = 120.0) -> tuple[float, int]:
    port = free_port()
    env = dict(os.environ, STUDIO_HOME=str(workspace))
    env.pop("SPACE_ID", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--workspace", str(workspace)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    body = r.read()
                    if r.status == 200 and b"SongGen Studio" in body:
                        return time.perf_counter() - t0, len(body)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the page was not served in time")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def make_run(ws: Path, lines: int) -> Path:
    run = ws / "runs" / "20260101-000000-bench"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("training: {type: lora}\n")
    (run / "run.json").write_text(json.dumps({"run_id": run.name, "status": "done", "command": "accelerate launch ..."}))
    (run / "train.log").write_text("".join(f"[train] step {i}\n" for i in range(200)))
    with open(run / "metrics.jsonl", "w") as fh:
        for s in range(1, lines + 1):
            fh.write(json.dumps({"type": "metrics", "step": s, "total": lines * 2, "epoch": s // 1000,
                                 "loss": 5.0 / (1 + s / 1e4), "loss_mixed": 5.1, "loss_vocal": 4.9, "loss_bgm": 5.0,
                                 "lr": 1e-4, "grad_norm": 0.5, "tokens_per_s": 1200.0, "eta_s": 100.0}) + "\n")
    return run


def append(run: Path, step: int) -> None:
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"type": "metrics", "step": step, "total": step * 2, "loss": 1.0, "loss_mixed": 1.0,
                             "loss_vocal": 1.0, "loss_bgm": 1.0, "eta_s": 1.0}) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--ticks", type=int, default=20)
    args = ap.parse_args()
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = [time_to_page(tmp / f"ws-start-{i}") for i in range(3)]
        imp = []
        for _ in range(3):  # baseline: the bare `import gradio` every Gradio app pays
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import gradio"], check=True, env=dict(os.environ))
            imp.append(time.perf_counter() - t)
        chk = subprocess.run([sys.executable, "-c", "import sys; from studio.app import build_app; "
                              f"build_app(workspace={str(tmp / 'ws-chk')!r}); print('torch' in sys.modules)"],
                             cwd=ROOT, capture_output=True, text=True)
        print(f"python app.py -> served page: median {statistics.median(r[0] for r in runs):.2f} s "
              f"(runs: {', '.join(f'{r[0]:.2f}' for r in runs)} s; page {runs[0][1]} bytes); "
              f"baseline `python -c 'import gradio'`: median {statistics.median(imp):.2f} s; "
              f"torch imported while building the UI: {chk.stdout.strip() or chk.stderr.strip()[-200:]}")

        ws = tmp / "ws-poll"
        t = time.perf_counter()
        run = make_run(ws, args.lines)
        size_mb = (run / "metrics.jsonl").stat().st_size / 1e6
        print(f"metrics.jsonl: {args.lines} lines, {size_mb:.1f} MB (written in {time.perf_counter() - t:.1f} s)")

        from studio import monitor
        from studio.app import build_app
        demo = build_app(workspace=ws)
        poll = demo.studio_ui["train"]["poll"]

        t = time.perf_counter()
        st = poll(str(run), {"run": None, "version": -1})[-1]
        first = time.perf_counter() - t
        inc, full = [], []
        step = args.lines
        for _ in range(args.ticks):
            step += 1
            append(run, step)
            t = time.perf_counter()
            out = poll(str(run), st)  # the Train tab's real tick: status, progress, plot, log tail, samples
            st = out[-1]
            inc.append(time.perf_counter() - t)
            assert isinstance(out[2], pd.DataFrame) and len(out[2])
        for _ in range(max(3, args.ticks // 4)):
            t = time.perf_counter()
            v = monitor.full_reread(run)  # baseline: what a poller that re-reads the file pays every tick
            pd.DataFrame(v.rows(), columns=["step", "loss", "series"])
            full.append(time.perf_counter() - t)
        print(f"first tick after (re)load (parses all {args.lines} lines once, shared by all viewers): {first * 1e3:.0f} ms")
        print(f"poll tick, incremental (1 new line, whole tick incl. plot frame + log tail): "
              f"median {statistics.median(inc) * 1e3:.1f} ms, max {max(inc) * 1e3:.1f} ms over {len(inc)} ticks")
        print(f"poll tick, baseline full re-read + parse + plot frame: median {statistics.median(full) * 1e3:.0f} ms "
              f"over {len(full)} ticks")
        print(f"speed-up: {statistics.median(full) / statistics.median(inc):.0f}x")
        idle = []
        for _ in range(args.ticks):
            t = time.perf_counter()
            out = poll(str(run), st)
            st = out[-1]
            idle.append(time.perf_counter() - t)
        print(f"poll tick with nothing new (plot not re-sent): median {statistics.median(idle) * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
