"""The timing editor's picture: waveform, vocal-activity envelope and section starts, as a PNG.

Drawn with Pillow (Gradio's own dependency) so the studio needs no plotting library.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

W, H = 1200, 240
PAD_TOP, PAD_BOTTOM = 22, 18
WAVE = (150, 160, 175)
ENV = (30, 110, 220)
START = (200, 40, 40)
PROPOSAL = (240, 150, 20)
GRID = (225, 228, 235)


def _x(t: float, duration: float) -> int:
    return int(round(min(max(t, 0.0), duration) / max(duration, 1e-6) * (W - 1)))


def render(path: Path, mono: np.ndarray, sample_rate: int, sections: Sequence[tuple[str, Optional[float]]],
           envelope_db: Optional[np.ndarray] = None, hop_s: float = 0.05,
           proposal: Optional[Sequence[float]] = None) -> Path:
    """Write the picture to `path`. `sections`: (label, start or None); `proposal`: proposed starts."""
    duration = len(mono) / sample_rate if len(mono) else 1.0
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    mid, amp = (PAD_TOP + H - PAD_BOTTOM) // 2, (H - PAD_TOP - PAD_BOTTOM) // 2
    for s in range(0, int(duration) + 1, 10):  # a tick every 10 s
        x = _x(s, duration)
        d.line([(x, PAD_TOP), (x, H - PAD_BOTTOM)], fill=GRID)
        d.text((x + 2, H - PAD_BOTTOM + 3), f"{s // 60}:{s % 60:02d}", fill=(110, 110, 110))
    if len(mono):
        edges = np.linspace(0, len(mono), W + 1).astype(int)
        peak = float(np.abs(mono).max()) or 1.0
        for x in range(W):
            seg = mono[edges[x]:max(edges[x] + 1, edges[x + 1])]
            lo, hi = float(seg.min()) / peak, float(seg.max()) / peak
            d.line([(x, mid - int(hi * amp)), (x, mid - int(lo * amp))], fill=WAVE)
    if envelope_db is not None and len(envelope_db):
        lo, hi = float(np.percentile(envelope_db, 5)), float(envelope_db.max())
        span = max(hi - lo, 1e-6)
        pts = [(_x(i * hop_s, duration), H - PAD_BOTTOM - int((min(max(v, lo), hi) - lo) / span * (H - PAD_TOP - PAD_BOTTOM)))
               for i, v in enumerate(envelope_db)]
        d.line(pts, fill=ENV, width=2)
    for t in proposal or []:
        x = _x(t, duration)
        for y in range(PAD_TOP, H - PAD_BOTTOM, 8):  # dashed
            d.line([(x, y), (x, y + 4)], fill=PROPOSAL, width=2)
    for k, (label, start) in enumerate(sections):
        if start is None:
            continue
        x = _x(start, duration)
        d.line([(x, 0), (x, H - PAD_BOTTOM)], fill=START, width=2)
        d.text((x + 3, 2 + (k % 2) * 10), f"{k + 1} {label}", fill=START)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
