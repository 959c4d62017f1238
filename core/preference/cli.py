"""`python -m core candidates ...` and `python -m core pairs ...`: the preference data from a shell.

    python -m core candidates generate --config cfg.yaml --lyrics "..." [--description ...] [-k 4]
                                       [--seed 0] [--checkpoint DIR] [--strength 1] [--max-seconds 10]
    python -m core candidates list     --config cfg.yaml
    python -m core candidates mark     --config cfg.yaml SET_DIR --chosen 1 --rejected 0 2
    python -m core candidates rank     --config cfg.yaml SET_DIR 2 0 1        (best first)
    python -m core pairs list|export FILE|import FILE|remove ID... --config cfg.yaml
"""
from __future__ import annotations

import argparse
import json
import sys


def _cfg(args):
    from core.config import load_config, parse_override
    return load_config(args.config, dict(parse_override(s) for s in args.set))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None)
    p.add_argument("--set", action="append", default=[], metavar="section.key=value")


def candidates_cli(argv: list[str]) -> int:
    from core.config import ConfigError
    from core.generate import GenerationError
    from core.model import CheckpointError
    from core.preference import candidates as cand
    from core.preference.pairs import PairError

    p = argparse.ArgumentParser(prog="python -m core candidates", description="Generate candidate songs for "
                                "one lyric and mark which one is better (preference pairs for DPO).")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="k candidates with distinct seeds from the current model")
    _common(g)
    g.add_argument("--lyrics", required=True)
    g.add_argument("--description", default=None)
    g.add_argument("-k", type=int, default=2)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--checkpoint", default=None, help="LoRA or full checkpoint (default: the base model)")
    g.add_argument("--strength", type=float, default=1.0)
    g.add_argument("--max-seconds", type=float, default=None)
    ls = sub.add_parser("list", help="candidate sets of the workspace, newest first")
    _common(ls)
    m = sub.add_parser("mark", help="one preferred candidate over the rejected ones")
    _common(m)
    m.add_argument("set_dir")
    m.add_argument("--chosen", type=int, required=True)
    m.add_argument("--rejected", type=int, nargs="+", required=True)
    r = sub.add_parser("rank", help="a ranking, best first: a pair for every better/worse combination")
    _common(r)
    r.add_argument("set_dir")
    r.add_argument("order", type=int, nargs="+")
    args = p.parse_args(argv)
    try:
        cfg = _cfg(args)
        if args.cmd == "generate":
            rec = cand.generate_candidates(cfg, args.lyrics, args.description, args.k, seed=args.seed,
                                           checkpoint=args.checkpoint, strength=args.strength,
                                           max_seconds=args.max_seconds)
            print(json.dumps(rec, indent=2, ensure_ascii=False))
            print(f"-> {cand.candidates_root(cfg) / rec['prompt_id']}")
        elif args.cmd == "list":
            for rec in cand.list_sets(cfg):
                print(f"{rec['dir']}  {len(rec['items'])} candidates  {rec['lyrics'][:60]!r}")
        elif args.cmd == "mark":
            print(cand.mark(cfg, args.set_dir, args.chosen, args.rejected).summary())
        else:
            print(cand.rank(cfg, args.set_dir, args.order).summary())
    except (ConfigError, GenerationError, CheckpointError, PairError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def pairs_cli(argv: list[str]) -> int:
    from core.config import ConfigError
    from core.preference.pairs import PairError, PairStore, pairs_dir

    p = argparse.ArgumentParser(prog="python -m core pairs", description="The workspace's preference pairs.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, help_ in [("list", "one line per pair"), ("export", "write every pair to a jsonl file"),
                        ("import", "add the pairs of a jsonl file (bad lines are named and skipped)"),
                        ("remove", "delete pairs by id")]:
        s = sub.add_parser(name, help=help_)
        _common(s)
        if name in ("export", "import"):
            s.add_argument("file")
        if name == "remove":
            s.add_argument("pair_ids", nargs="+")
    args = p.parse_args(argv)
    try:
        store = PairStore(pairs_dir(_cfg(args)))
        if args.cmd == "list":
            for row in store.load():
                print(f"{row['pair_id']}  prompt {row['prompt_id']}  chosen {len(row['chosen'][0])} frames "
                      f"(seed {row['chosen_seed']})  rejected {len(row['rejected'][0])} frames "
                      f"(seed {row['rejected_seed']})  {row['created']}")
            print(f"{len(store)} pair(s) in {store.root}")
        elif args.cmd == "export":
            print(f"{store.export_jsonl(args.file)} pair(s) -> {args.file}")
        elif args.cmd == "import":
            rep = store.import_jsonl(args.file)
            print(rep.summary())
            return 0 if rep.added or not rep.skipped else 1
        else:
            print(f"{store.remove(args.pair_ids)} pair(s) removed")
    except (ConfigError, PairError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
