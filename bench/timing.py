"""Section-start accuracy of each timing method on songs with known starts.

    python bench/timing.py [--songs river,breaks,summer] [--methods align,align-mix,vocal] [--json OUT]

The songs are made here (tests/songsynth.py): espeak-ng sings known lines at known times over a real
instrumental recording (Debian's asc-music), 3-3.5 minutes, 7-8 sections, "breaks" with two
instrumental breaks of 24-28 s. Needs the apt packages espeak-ng, sox and asc-music. No Demucs weights:
the vocal estimate is the DEMO split (mid/side + vocal band). Methods:
- align:     forced alignment of the lyrics (core.timing.alignment) on the DEMO vocal estimate;
- align-mix: the same on the mix;
- vocal:     the vocal-activity proposal (core.timing.vocal_activity) on the DEMO vocal estimate;
             when it finds its estimate unusable it proposes nothing (counted as "refused").
Prints per song the error and confidence of each section start, and per method: median and worst
absolute error of the section starts, the share within 1.5 s, and seconds per song.
Goal (issue 28, English, forced alignment): median <= 0.5 s, >= 90 % within 1.5 s.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.audio import io as audio_mod  # noqa: E402
from core.codec.demo import demo_split  # noqa: E402
from core.text import lyrics as lyr  # noqa: E402
from core.timing.alignment import align_sections  # noqa: E402
from core.timing.sections import TimingError  # noqa: E402
from core.timing.vocal_activity import propose_from_stem  # noqa: E402
from tests import songsynth  # noqa: E402

METHODS = ("align", "align-mix", "vocal")


def _starts(method: str, sections, wav, sr) -> tuple[list[float] | None, list[float], str]:
    """(section starts, their confidences, why refused)."""
    vocal = demo_split(audio_mod.to_stereo(wav), sr)[0] if method != "align-mix" else wav
    if method.startswith("align"):
        try:
            al = align_sections(sections, vocal, sr)
        except TimingError as err:
            return None, [], str(err)
        return [s.start_s for s in al.timing.sections], al.section_confidence, ""
    prop, _, _ = propose_from_stem(sections, vocal, sr)
    if prop.unusable:
        return None, [], prop.unusable
    return [s.start_s for s in prop.timing.sections], prop.section_confidence, ""


def summary(errors: list[float]) -> dict:
    if not errors:
        return {"n": 0}
    return {"n": len(errors), "median_s": round(statistics.median(errors), 2), "worst_s": round(max(errors), 2),
            "within_1_5_s": round(sum(e <= 1.5 for e in errors) / len(errors), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--songs", default=",".join(p.name for p in songsynth.plans()))
    ap.add_argument("--methods", default="align,vocal")
    ap.add_argument("--json", default=None, help="also write the per-song results here")
    args = ap.parse_args(argv)
    if songsynth.missing_tools():
        print("needs the apt packages: " + " ".join(songsynth.missing_tools()), file=sys.stderr)
        return 2
    plans = [p for p in songsynth.plans() if p.name in args.songs.split(",")]
    methods = [m for m in args.methods.split(",") if m in METHODS]
    errors: dict[str, list[float]] = {m: [] for m in methods}
    refused: dict[str, int] = {m: 0 for m in methods}
    secs: dict[str, list[float]] = {m: [] for m in methods}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for plan in plans:
            truth = songsynth.render(plan, Path(tmp) / f"{plan.name}.wav")
            wav, sr = audio_mod.read_audio(Path(tmp) / f"{plan.name}.wav")
            sections = lyr.check_lyrics(truth["gt_lyric"]).sections
            want = [s["start_s"] for s in truth["sections"]]
            for m in methods:
                t = time.perf_counter()
                got, conf, why = _starts(m, sections, wav, sr)
                secs[m].append(time.perf_counter() - t)
                if got is None:
                    refused[m] += 1
                    rows.append({"song": plan.name, "method": m, "refused": why})
                    print(f"{plan.name:8s} {m:10s} refused: {why}")
                    continue
                err = [abs(g - w) for g, w in zip(got, want)]
                errors[m] += err
                rows.append({"song": plan.name, "method": m, "errors_s": [round(e, 2) for e in err],
                             "confidence": [round(float(c), 2) for c in conf], "s": round(secs[m][-1], 1)})
                print(f"{plan.name:8s} {m:10s} {plan.duration_s:5.0f} s  errors " + " ".join(f"{e:.2f}" for e in err)
                      + "  confidence " + " ".join(f"{c:.2f}" for c in conf) + f"  ({secs[m][-1]:.0f} s)")
    print("\nmethod       sections  median  worst  within 1.5 s  refused  s/song")
    out = {}
    for m in methods:
        s = summary(errors[m])
        out[m] = {**s, "refused_songs": refused[m], "s_per_song": round(statistics.mean(secs[m]), 1)}
        if s["n"]:
            print(f"{m:12s} {s['n']:8d}  {s['median_s']:6.2f} {s['worst_s']:6.2f}  {s['within_1_5_s']:11.0%}  "
                  f"{refused[m]:7d}  {out[m]['s_per_song']:6.1f}")
        else:
            print(f"{m:12s} {0:8d}       -      -            -  {refused[m]:7d}  {out[m]['s_per_song']:6.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": out, "songs": rows}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
