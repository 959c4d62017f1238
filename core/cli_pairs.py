"""The headless preference commands, registered in the one CLI (core.cli):

    python -m core candidates generate --lyrics "..." [--description ...] [-k 4] [--seed 0]
                                       [--checkpoint DIR] [--strength 1] [--max-seconds 10] --config cfg.yaml
    python -m core candidates list                          --config cfg.yaml
    python -m core candidates mark SET_DIR --chosen 1 --rejected 0 2   --config cfg.yaml
    python -m core candidates rank SET_DIR --order 2 0 1 (best first)  --config cfg.yaml
    python -m core pairs list | export FILE | import FILE | remove ID...  --config cfg.yaml

Only argparse here at import time: torch and datasets load when a command runs.
"""
from __future__ import annotations

import json
import sys
from typing import Callable


def _cfg(args):
    from core.config import load_config, parse_override
    return load_config(args.config, dict(parse_override(s) for s in args.set))


def _fail(err: BaseException) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 1


def _candidates(args) -> int:
    from core.config import ConfigError
    from core.export.generate import GenerationError
    from core.model import CheckpointError
    from core.export import candidates as cand
    from core.preference.pairs import PairError
    from core.runs.budget import TimeLimit

    try:
        cfg = _cfg(args)
        if args.action == "generate":
            if not args.lyrics:
                raise GenerationError("give --lyrics")
            rec = cand.generate_candidates(cfg, args.lyrics, args.description, args.k, seed=args.seed,
                                           checkpoint=args.checkpoint, strength=args.strength,
                                           max_seconds=args.max_seconds)
            print(json.dumps(rec, indent=2, ensure_ascii=False))
            print(f"-> {cand.candidates_root(cfg) / rec['prompt_id']}")
        elif args.action == "list":
            for rec in cand.list_sets(cfg):
                print(f"{rec['dir']}  {len(rec['items'])} candidates  {rec['lyrics'][:60]!r}")
        else:
            if len(args.target) != 1:
                raise PairError(f"{args.action} takes one candidate set folder (see `candidates list`)")
            if args.action == "mark":
                if args.chosen is None or not args.rejected:
                    raise PairError("mark needs --chosen N and --rejected N [N ...]")
                rep = cand.mark(cfg, args.target[0], args.chosen, args.rejected)
            else:
                rep = cand.rank(cfg, args.target[0], args.order or [])
            print(rep.summary())
            return 0 if rep.added or not rep.skipped else 1
    except (ConfigError, GenerationError, TimeLimit, CheckpointError, PairError, FileNotFoundError) as err:
        return _fail(err)
    return 0


def _pairs(args) -> int:
    from core.config import ConfigError
    from core.preference.pairs import PairError, PairStore, pairs_dir

    try:
        store = PairStore(pairs_dir(_cfg(args)))
        if args.action == "list":
            for row in store.load():
                print(f"{row['pair_id']}  prompt {row['prompt_id']}  chosen {len(row['chosen'][0])} frames "
                      f"(seed {row['chosen_seed']})  rejected {len(row['rejected'][0])} frames "
                      f"(seed {row['rejected_seed']})  {row['created']}")
            print(f"{len(store)} pair(s) in {store.root}")
        elif args.action == "remove":
            print(f"{store.remove(args.target)} pair(s) removed")
        else:
            if len(args.target) != 1:
                raise PairError(f"pairs {args.action} takes one jsonl file")
            if args.action == "export":
                print(f"{store.export_jsonl(args.target[0])} pair(s) -> {args.target[0]}")
            else:
                rep = store.import_jsonl(args.target[0])
                print(rep.summary())
                return 0 if rep.added or not rep.skipped else 1
    except (ConfigError, PairError) as err:
        return _fail(err)
    return 0


def add_commands(cmd: Callable) -> None:
    """Register `candidates` and `pairs`; `cmd(name, run, help)` returns a parser with --config/--set."""
    p = cmd("candidates", _candidates, "generate k candidate songs for one lyric with distinct seeds, and mark the "
                                       "preferred / rejected ones (preference pairs for a DPO run)")
    p.add_argument("action", choices=["generate", "list", "mark", "rank"])
    p.add_argument("target", nargs="*", help="mark / rank: the candidate set folder")
    p.add_argument("--lyrics", default=None)
    p.add_argument("--description", default=None)
    p.add_argument("-k", type=int, default=2, help="number of candidates (default 2)")
    p.add_argument("--seed", type=int, default=0, help="first seed; candidate i uses seed + i")
    p.add_argument("--checkpoint", default=None, help="LoRA or full checkpoint (default: the base model)")
    p.add_argument("--strength", type=float, default=1.0, help="LoRA strength for --checkpoint")
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--chosen", type=int, default=None, help="mark: the preferred candidate's index")
    p.add_argument("--rejected", type=int, nargs="+", default=None, help="mark: the rejected candidates' indices")
    p.add_argument("--order", type=int, nargs="+", default=None, help="rank: candidate indices, best first")
    p = cmd("pairs", _pairs, "the workspace's preference pairs: list, export / import jsonl (tokens as lists; "
                             "bad lines are named and skipped), remove by id")
    p.add_argument("action", choices=["list", "export", "import", "remove"])
    p.add_argument("target", nargs="*", help="export / import: the jsonl file; remove: pair ids")
