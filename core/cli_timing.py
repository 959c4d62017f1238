"""`python -m core timing propose|align|transcribe|import`: section timing without typing, headless.

    python -m core timing align --audio song.wav --lyrics "[verse] ..."      # one song
    python -m core timing propose --metadata data/metadata.jsonl [--song IDX] [--write]
    python -m core timing transcribe --audio song.wav --model ~/models/whisper-small
    python -m core timing import --audio song.wav --songprep "[intro][0.00:5.80] ; [verse][5.80:25.40]..."
    python -m core timing import --metadata metadata.jsonl --songprep-key songprep --write

JSON on stdout: {"songs": [{"idx", "method", "source", "sections": [{"section", "start_s", "confidence",
"source"}], "notes", "refused"?, "lyrics"?}]}. Nothing is written unless --write: then each song's line
in metadata.jsonl gets "timing" (and "gt_lyric" from transcribe / import when it had none); the old
file is kept as metadata.jsonl.bak. Exit 0 when every song got a proposal, 1 when one was refused.
Only argparse here at import time: torch loads when the command runs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Optional

ACTIONS = {"propose": "auto", "align": "align", "transcribe": "transcribe", "import": "songprep"}


def add_command(cmd: Callable) -> None:
    p = cmd("timing", _timing, "section timing from the recording: propose (alignment, else vocal activity), align "
                               "the lyrics, transcribe with a local Whisper model, import SongPrep output; JSON out")
    p.add_argument("action", choices=list(ACTIONS))
    p.add_argument("--audio", default=None, help="one song's audio file")
    p.add_argument("--lyrics", default=None, help="its lyrics (official form or plain sections)")
    p.add_argument("--lyrics-file", default=None, help="its lyrics from a text file")
    p.add_argument("--vocal", default=None, help="its vocal stem, when you have one (better than the estimate)")
    p.add_argument("--metadata", default=None, help="metadata.jsonl: every song in it (or --song IDX)")
    p.add_argument("--song", action="append", default=[], help="only this idx (repeatable)")
    p.add_argument("--model", default=None, help="transcribe: a Whisper model folder on this machine")
    p.add_argument("--language", default=None, help="transcribe: the songs' language code (default: detect)")
    p.add_argument("--songprep", default=None, help="import: SongPrep's output for --audio (string or file)")
    p.add_argument("--songprep-key", default="songprep",
                   help="import with --metadata: the key holding each song's SongPrep output (default songprep)")
    p.add_argument("--runtime", default=None, help="SongGeneration runtime folder: Demucs for the vocal estimate")
    p.add_argument("--write", action="store_true", help="write the timing into metadata.jsonl (with --metadata)")


def _songs(args) -> list[dict]:
    """[{idx, audio, lyrics, vocal, songprep, line}] from --audio or --metadata."""
    from core.text.fields import read_text_file

    if args.audio:
        lyrics = read_text_file(Path(args.lyrics_file)) if args.lyrics_file else args.lyrics
        return [{"idx": Path(args.audio).stem, "audio": args.audio, "lyrics": lyrics, "vocal": args.vocal,
                 "songprep": args.songprep}]
    from core.data.inputs import load_metadata, metadata_rows

    meta = Path(args.metadata)
    raw = {str(d.get("idx")): d for _, _, d, _ in metadata_rows(read_text_file(meta)) if d}
    out = []
    for s in load_metadata(meta):
        if args.song and s.idx not in args.song:
            continue
        sp = raw.get(str(s.idx), {}).get(args.songprep_key)
        if sp and not str(sp).lstrip().startswith("[") and not Path(str(sp)).is_absolute():
            sp = str(meta.parent / str(sp))  # a SongPrep file named relative to metadata.jsonl
        out.append({"idx": s.idx, "audio": s.audio, "lyrics": s.lyrics, "vocal": s.vocal, "songprep": sp,
                    "problems": s.problems})
    return out


def _tags(lyrics) -> list[str]:
    from core.text.lyrics import check_lyrics

    res = check_lyrics(lyrics or "")
    return [t for t, _ in res.sections] if (lyrics or "").strip() and res.ok else []


def _write(meta: Path, results: dict[str, dict]) -> int:
    """Each proposed song's line gets "timing" (and "gt_lyric" when it had none); a .bak keeps the old file."""
    from core.fsutil import atomic_write_text
    from core.text.fields import read_text_file

    text = read_text_file(meta)
    lines, n = [], 0
    for line in text.splitlines():
        d = json.loads(line) if line.strip() else None
        r = results.get(str(d.get("idx"))) if isinstance(d, dict) else None
        if r is not None:
            d["timing"] = {"source": r["source"], "sections": [{"tag": s["section"], "start_s": s["start_s"]}
                                                               for s in r["sections"]]}
            if r.get("lyrics") and not (d.get("gt_lyric") or "").strip():
                d["gt_lyric"] = r["lyrics"]
            line, n = json.dumps(d, ensure_ascii=False), n + 1
        lines.append(line)
    meta.with_name(meta.name + ".bak").write_text(text, encoding="utf-8")
    atomic_write_text(meta, "\n".join(lines) + "\n")
    return n


def _timing(args) -> int:
    from core.timing.propose import run_auto, run_method

    if bool(args.audio) == bool(args.metadata):
        print("error: give --audio FILE (one song) or --metadata metadata.jsonl (its songs)", file=sys.stderr)
        return 2
    if args.write and not args.metadata:
        print("error: --write updates metadata.jsonl; give --metadata", file=sys.stderr)
        return 2
    try:
        songs = _songs(args)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    method = ACTIONS[args.action]
    results, ok = [], {}
    for s in songs:  # one bad song never stops the others
        if s.get("problems"):
            results.append({"idx": s["idx"], "method": method, "sections": [], "refused": "; ".join(s["problems"])})
            continue
        kw = dict(vocal_path=s.get("vocal"), runtime_path=args.runtime, model_dir=args.model,
                  songprep=s.get("songprep"), language=args.language)
        r = run_auto(s["audio"], s["lyrics"], **kw) if method == "auto" else run_method(method, s["audio"], s["lyrics"], **kw)
        if not r.refused and r.lyrics and _tags(s["lyrics"]) and _tags(s["lyrics"]) != _tags(r.lyrics):
            r.refused = (f"the song's lyrics have the sections {' '.join(_tags(s['lyrics']))} but the "
                         f"{'imported' if args.action == 'import' else 'transcribed'} "
                         f"sheet has {' '.join(_tags(r.lyrics))}; clear its gt_lyric to use the sheet")
        d = {"idx": s["idx"], **r.to_dict()}
        results.append(d)
        if not r.refused:
            ok[str(s["idx"])] = d
    out: dict = {"songs": results}
    if args.write:
        out["written"] = _write(Path(args.metadata), ok)
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0 if len(ok) == len(results) else 1

