"""Reading what a run's trainer writes: metrics.jsonl (cheap incremental polls) and the tail of train.log."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

LOG_NAME = "train.log"
METRICS_NAME = "metrics.jsonl"


def read_metrics(run_dir: str | os.PathLike, since_offset: int = 0,
                 max_bytes: int = 8 << 20) -> tuple[list[dict[str, Any]], int]:
    """Records appended to metrics.jsonl since byte `since_offset` -> (records, new_offset).

    Cheap for a UI poll: it seeks to the offset and reads at most `max_bytes`; a partly written last
    line is left for the next call. If the file shrank (replaced), it starts again from 0. After a
    resume, steps after the checkpoint appear again; a later line for a step replaces an earlier one
    (see `metrics_series`).
    """
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        return [], 0
    size = path.stat().st_size
    if since_offset > size:
        since_offset = 0
    with open(path, "rb") as fh:
        fh.seek(since_offset)
        chunk = fh.read(max_bytes)
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], since_offset
    records = []
    for line in chunk[:end].splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records, since_offset + end + 1


def metrics_series(records: list[dict[str, Any]], key: str = "loss") -> list[tuple[int, Optional[float]]]:
    """(step, value) pairs of the metrics records, one per step, the latest line of a step winning."""
    by_step: dict[int, Optional[float]] = {}
    for r in records:
        if r.get("type") == "metrics" and key in r:
            by_step[int(r["step"])] = r[key]
    return sorted(by_step.items())


def tail_log(run_dir: str | os.PathLike, lines: int = 50) -> str:
    path = Path(run_dir) / LOG_NAME
    if not path.is_file():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        data = fh.read().decode("utf-8", errors="replace")
    return "\n".join(data.splitlines()[-lines:])
