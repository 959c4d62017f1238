"""Benchmark `core.data.prepare` with the demo codec.

    python bench/prepare.py [--songs 20] [--seconds 30]

Prints, for one run on synthetic songs (written to a temp folder):
- cold prepare: songs/s and audio-seconds/s (QC, demo separation, demo encode, datasets write);
- cache-hit re-run: seconds per 100 songs (nothing is encoded);
- baseline, measured in the same run: reading + hashing the same audio files, per 100 songs, i.e.
  the least a re-run that checks the audio bytes must do.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import load_config  # noqa: E402
from core.data import hash_file, model_limits, prepare  # noqa: E402
from core.codec.demo import DemoCodec  # noqa: E402
from tests.datagen import GOOD_LYRICS, write_song  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--songs", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = [write_song(root / "songs" / f"song{i:03d}.wav", args.seconds, seed=i) for i in range(args.songs)]
        items = [{"idx": p.stem, "audio": str(p), "lyrics": GOOD_LYRICS, "description": "pop, female"} for p in paths]
        cfg = load_config(None, {"workspace": str(root / "ws")})
        model_limits(cfg)  # builds/loads the demo model once, outside the timings
        codec = DemoCodec()

        t = time.perf_counter()
        cold = prepare(cfg, items=items, codec=codec)
        t_cold = time.perf_counter() - t
        assert cold.summary["prepared"] == args.songs, cold.summary

        t = time.perf_counter()
        warm = prepare(cfg, items=items, codec=codec)
        t_warm = time.perf_counter() - t
        assert warm.summary["encoded"] == 0 and warm.dataset_dir == cold.dataset_dir

        t = time.perf_counter()
        for p in paths:
            hash_file(p)
        t_base = time.perf_counter() - t

    audio_s = args.songs * args.seconds
    per100 = 100 / args.songs
    import os
    import torch
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"prepare (demo codec, demo split), {args.songs} songs x {args.seconds:g} s, 48 kHz stereo 16-bit WAV")
    print(f"  machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load average {load:.1f}")
    print(f"  cold run            {t_cold:8.2f} s   {args.songs / t_cold:7.2f} songs/s   {audio_s / t_cold:8.1f} audio-s/s")
    print(f"  cache-hit re-run    {t_warm:8.2f} s   = {t_warm * per100:7.2f} s per 100 songs (encoded 0)")
    print(f"  baseline: read+hash {t_base:8.2f} s   = {t_base * per100:7.2f} s per 100 songs")
    print(f"  re-run speed-up over cold: {t_cold / max(t_warm, 1e-9):.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
