"""The headless commands, one parser: `python -m core <command>` or `songgen-studio <command>`.

    model-info  describe a checkpoint folder (or the demo model)
    prepare     check, separate and tokenize songs into the datasets cache
    train       finetune in this process (`accelerate launch -m core.train` for several GPUs)
    merge       merge a LoRA checkpoint into its base (official layout)
    generate    test songs, A/B, LoRA strength sweeps
    push        adapter / merged model / dataset to the Hugging Face Hub
    timing      section starts: propose, align lyrics, transcribe, import SongPrep (core.cli_timing)

`--config` and `--set` are declared once and shared by every command; relative paths in a
config resolve against the config file's folder (core.config), so commands run from any folder.
Exit codes: 0 ok, 1 the command failed (the message says why), 2 bad usage or config.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Optional

from core.config import ConfigError, StudioConfig, load_config, parse_override
from core.sampling import GEN_TYPES, SAMPLING

# A generated test song is short unless asked otherwise: the model's full 150 s takes long on a
# small GPU and is rarely what "listen to the finetune" needs.
DEFAULT_GENERATE_SECONDS = 30.0


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", default=None, help="YAML config (see README); relative paths in it are "
                                                  "relative to its own folder")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (repeatable), e.g. training.learning_rate=3e-4")
    return p


def _config(args, extra: Optional[dict] = None) -> StudioConfig:
    overrides = dict(parse_override(s) for s in args.set)
    overrides.update(extra or {})
    return load_config(args.config, overrides)


def _fail(err: object, code: int = 1, clean: Callable[[str], str] = str) -> int:
    print(f"error: {clean(str(err))}", file=sys.stderr)
    return code


# ---- model-info -----------------------------------------------------------------------------
def _model_info(args) -> int:
    import os

    from core.model import CheckpointError, describe_checkpoint

    try:
        cfg = _config(args) if args.config or args.set else None
        target = args.ckpt_dir or (cfg.paths.base_model_path if cfg else None)
        if not target:
            raise ValueError("give a checkpoint folder, 'demo', or --config with paths.base_model_path")
        if target == "demo":
            from core.training.demo_pretrain import ensure_demo_model
            ws = args.workspace or (str(cfg.workspace_dir()) if cfg else None) or os.environ.get("STUDIO_HOME") or "workspace"
            ckpt = ensure_demo_model(ws)
        else:
            ckpt = Path(target)
        info = describe_checkpoint(ckpt, args.runtime_root or (cfg.paths.runtime_path if cfg else None))
    except ConfigError as err:
        return _fail(err, 2)
    except (CheckpointError, ValueError) as err:
        return _fail(err)
    print(json.dumps(info.to_dict(), indent=2) if args.json else info.summary())
    return 0


# ---- prepare --------------------------------------------------------------------------------
def _prepare(args) -> int:
    from core import data

    try:
        cfg = _config(args)
    except ConfigError as err:
        return _fail(err, 2)
    bar = None

    def progress(done: int, total: int, message: str) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="song", desc="prepare", file=sys.stderr)
        bar.n = done
        bar.set_postfix_str(message[:30])
        bar.refresh()

    from core.runs.budget import TimeLimit, data_budget, song_steps

    try:  # data.time_limit_s / data.stall_limit_s hold here as in the studio
        result = data.prepare(cfg, progress=song_steps(data_budget(cfg), progress))
    except (data.DataError, TimeLimit, ValueError, OSError) as err:
        return _fail(err, 2)
    finally:
        if bar is not None:
            bar.close()
    print(data.format_summary(result))
    if not result.ok:
        print(f"error: no song could be prepared; see the reasons above and in {result.report_path}", file=sys.stderr)
        return 1
    return 0


# ---- train ----------------------------------------------------------------------------------
def _train(args) -> int:
    from core.runs import store as runs
    from core.training.trainer import train

    try:
        cfg = _config(args)
    except ConfigError as err:
        return _fail(err, 2)
    from core.model import CheckpointError
    from core.model.info import check_base_model

    try:
        check_base_model(cfg)  # before a run folder is made for a run sure to fail
    except CheckpointError as err:
        return _fail(err, 2)
    if cfg.paths.output_dir is None:  # a fresh run folder, like the studio's
        run_dir = runs.create_run(cfg)
        cfg = runs.load_run_config(run_dir)
        config_path = run_dir / runs.CONFIG_NAME
    else:
        run_dir = cfg.output_dir()
        # the run's config.yaml is what a resume and export read: write the effective one there
        config_path = Path(args.config) if args.config and not args.set else cfg.save(run_dir / runs.CONFIG_NAME)
    from core.runs import launch

    try:
        cmds = launch.machine_commands(config_path, cfg, resume=args.resume or False)
    except ConfigError as err:
        return _fail(err, 2)
    where = [f"  machine {r}: {c}" if len(cmds) > 1 else f"  {c}" for r, c in enumerate(cmds)]
    print(f"[train] run folder {run_dir}\n[train] same run from a shell (training.distributed = "
          f"{cfg.training.distributed}; this process trains alone):\n" + "\n".join(where), flush=True)
    from core.runs.lock import RunLocked
    from core.training import host_memory

    host_memory.for_cpu_trainer()  # this process only trains
    try:
        outcome = train(cfg, resume=args.resume, config_path=Path(config_path))
    except RunLocked as err:  # another trainer holds this run folder: it is named in the message
        return _fail(err, 3)
    except (ConfigError, FileNotFoundError, RuntimeError, OSError) as err:
        return _fail(err)
    return 0 if outcome in (runs.RunStatus.DONE, runs.RunStatus.STOPPED) else 1


# ---- merge ----------------------------------------------------------------------------------
def choose_checkpoint(cfg: StudioConfig) -> tuple[Path, str]:
    """The checkpoint `merge` uses when none is given, and why: the run's best one (lowest validation
    loss, core.training.checkpoints) when it has one, else its newest. The run is the config's
    (paths.output_dir), else the newest run in the workspace that has a checkpoint."""
    from core.runs import store as runs
    from core.training.checkpoints import list_checkpoints

    candidates = [cfg.output_dir()] if cfg.paths.output_dir else [Path(r["run_dir"]) for r in runs.list_runs(cfg.workspace_dir())]
    for run_dir in candidates:
        found = list_checkpoints(run_dir)
        best = next((c for c in found if c["best"]), None)
        if best is not None:
            val = best.get("val_loss")
            if val is None:  # saved before its evaluation was known: run.json keeps the best one's loss
                val = (runs.read_run_json(run_dir).get("best") or {}).get("val_loss")
            return Path(best["path"]), (f"the best checkpoint of run {run_dir.name} (lowest validation loss"
                                        f"{f' {val:.4f}' if val is not None else ''}, step {best['step']})")
        if found:
            return Path(found[-1]["path"]), (f"the newest checkpoint of run {run_dir.name} (step {found[-1]['step']}; "
                                             "no validation loss was recorded, so there is no best one)")
    where = cfg.output_dir() if cfg.paths.output_dir else runs.runs_root(cfg.workspace_dir())
    raise FileNotFoundError(f"no finished checkpoint under {where}; train first or pass --checkpoint "
                            "<run>/checkpoints/step-N")


def default_checkpoint(cfg: StudioConfig) -> Path:
    return choose_checkpoint(cfg)[0]


def _merge(args) -> int:
    try:
        cfg = _config(args)
    except ConfigError as err:
        return _fail(err, 2)
    from core.export.merge import ExportError, export_checkpoint
    from core.model import CheckpointError

    try:
        ckpt = args.checkpoint
        if not ckpt:
            ckpt, why = choose_checkpoint(cfg)
            print(f"[merge] no --checkpoint given: using {why}: {ckpt}", file=sys.stderr)
        res = export_checkpoint(ckpt, args.out, cfg=cfg, base=args.base, strength=args.strength,
                                dtype=args.dtype, overwrite=args.overwrite)
    except (ExportError, CheckpointError, ValueError, FileNotFoundError) as err:
        return _fail(err)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
    else:
        what = (f"merged LoRA {res.source} (strength {res.strength:g}, {res.lora_layers} layers) into {res.base_model}"
                if res.kind == "lora-merge" else f"copied full checkpoint {res.source}")
        print(f"{what}\n-> {res.out_dir}  (config.yaml + model.pt, {res.num_keys} official keys, {res.dtype})")
        for n in res.notes:
            print(f"note: {n}")
    return 0



def _sampling_flags(p: argparse.ArgumentParser) -> None:
    """--gen-type and one flag per sampling setting, their choices and defaults from core.sampling."""
    p.add_argument("--gen-type", default=None, type=_one_of(GEN_TYPES), metavar="{" + ",".join(GEN_TYPES) + "}",
                   help=f"what to render (default generation.gen_type, else {GEN_TYPES[0]})")
    for name, default in SAMPLING.kwargs().items():
        p.add_argument("--" + name.replace("_", "-"), type=type(default), default=None,
                       help=f"sampling (default generation.{name}, else {default:g})")


def _one_of(allowed: tuple[str, ...]) -> Callable[[str], str]:
    """An argparse type that accepts one of `allowed` and names them all otherwise."""
    def check(value: str) -> str:
        if value not in allowed:
            raise argparse.ArgumentTypeError(f"{value!r}: choose one of {', '.join(allowed)}")
        return value
    return check


# ---- generate -------------------------------------------------------------------------------
def _generate(args) -> int:
    try:
        extra = {"generation.max_seconds": args.max_seconds} if args.max_seconds is not None else {}
        cfg = _config(args, extra)
    except ConfigError as err:
        return _fail(err, 2)
    from core.export import compare
    from core.export import generate as gen
    from core.model import CheckpointError
    from core.runs.budget import TimeLimit

    if args.audio_format is not None and args.audio_format not in gen.AUDIO_FORMATS:
        return _fail(f"--format {args.audio_format!r}: choose one of {', '.join(gen.AUDIO_FORMATS)}", 2)
    try:
        if cfg.generation.max_seconds is None and args.max_frames is None:
            cfg.generation.max_seconds = DEFAULT_GENERATE_SECONDS
        settings = gen.settings_from_config(cfg, lyrics=args.lyrics, description=args.description, seed=args.seed,
                                            gen_type=args.gen_type, max_frames=args.max_frames,
                                            prompt_audio=args.prompt_audio, prompt_tokens=args.prompt_tokens,
                                            audio_format=args.audio_format,
                                            **{name: getattr(args, name) for name in SAMPLING.kwargs()})
        ckpt = args.checkpoint or cfg.generation.checkpoint
        compare_to = args.compare_to or cfg.generation.compare_to
        kw = dict(settings=settings, out_dir=args.out, overwrite=args.overwrite, with_val_loss=not args.no_val_loss,
                  dataset_dir=args.dataset)
        if args.sweep is not None:
            if not ckpt:
                raise gen.GenerationError("--sweep needs --checkpoint (a LoRA checkpoint folder)")
            strengths = [float(x) for x in args.sweep.split(",") if x.strip()]
            man = compare.strength_sweep(cfg, ckpt, strengths, **kw)
        elif args.ab:
            if not ckpt:
                raise gen.GenerationError("--ab needs --checkpoint (the B side)")
            man = compare.ab_compare(cfg, ckpt, None if compare_to in (None, "base") else compare_to, strength=args.strength, **kw)
        else:
            man = compare.generate_single(cfg, ckpt, strength=args.strength, **kw)
    except (gen.GenerationError, TimeLimit, ConfigError, CheckpointError, ValueError, FileNotFoundError) as err:
        return _fail(err)
    if args.json:
        print(json.dumps(man.to_dict(), indent=2, ensure_ascii=False))
    else:
        print((Path(man.out_dir) / "summary.txt").read_text(encoding="utf-8"))
        print(f"-> {man.out_dir}")
    return 0


# ---- push -----------------------------------------------------------------------------------
def _push(args) -> int:
    from core.export import hub

    token = sys.stdin.readline().strip() if args.token_stdin else None
    clean = lambda text: hub.mask(text, token)  # noqa: E731  the token never reaches a terminal or log
    try:
        cfg = _config(args)
    except ConfigError as err:
        return _fail(err, 2, clean)
    try:
        private = False if args.public else (True if args.private else None)
        res = hub.push(cfg, repo_id=args.repo_id, adapter_dir=args.adapter or None, merged_dir=args.merged or None,
                       samples_dir=args.samples, dataset_dir=args.dataset or None,
                       push_dataset=True if args.dataset is not None else None, dataset_repo_id=args.dataset_repo_id,
                       private=private, update=args.update, token=token, commit_message=args.message,
                       log=lambda m: print(clean(m), file=sys.stderr))
    except (hub.HubError, ConfigError, ValueError) as err:
        return _fail(err, 1, clean)
    print(json.dumps(res.to_dict(), indent=2) if args.json else
          f"pushed {len(res.files)} files to {res.url} ({'private' if res.private else 'public'})"
          + (f"\ndataset: {res.dataset_url} ({len(res.dataset_files)} files)" if res.dataset_repo_id else ""))
    return 0


# ---- the parser -----------------------------------------------------------------------------
def build_parser(prog: str = "python -m core") -> argparse.ArgumentParser:
    common = _common()
    ap = argparse.ArgumentParser(prog=prog, description="SongGen Studio headless commands (one YAML config).")
    sub = ap.add_subparsers(dest="command", metavar="<command>")

    def cmd(name: str, run: Callable, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(run=run)
        return p

    p = cmd("model-info", _model_info, "print a checkpoint's version, dims, parameter count, dtype and runtime root")
    p.add_argument("ckpt_dir", nargs="?", default=None,
                   help="checkpoint folder (config.yaml + model.pt) or 'demo'; default paths.base_model_path")
    p.add_argument("--runtime-root", default=None, help="SongGeneration runtime folder (third_party/, conf/)")
    p.add_argument("--workspace", default=None, help="workspace for the demo model (default $STUDIO_HOME or ./workspace)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = cmd("prepare", _prepare, "validate songs, separate vocals/accompaniment, tokenize into the datasets cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = cmd("train", _train, "finetune (full or LoRA) in this process; prints the equivalent accelerate command")
    p.add_argument("--resume", nargs="?", const="latest", default=None,
                   help="continue from the latest checkpoint of the run (or from the given checkpoints/step-N)")

    p = cmd("merge", _merge, "merge a LoRA checkpoint into its base model (or copy a full one) as an official "
                             "SongGeneration checkpoint: config.yaml + model.pt")
    p.add_argument("--checkpoint", default=None, help="<run>/checkpoints/step-N (default: the config's run's best "
                                                      "checkpoint by validation loss, else its newest)")
    p.add_argument("--base", default=None, help="base checkpoint folder (default: the one the run trained on)")
    p.add_argument("--strength", type=float, default=1.0, help="LoRA strength: 0 = base, 1 = as trained (default 1)")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                   help="dtype of the written model.pt (default: the base checkpoint's)")
    p.add_argument("--out", default=None, help="output folder (default <workspace>/exports/<run>_<step>)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = cmd("generate", _generate, "generate test songs; A/B a checkpoint against the base (or another); sweep a "
                                   "LoRA's strength. Settings default to the config's `generation` section")
    p.add_argument("--checkpoint", default=None, help="finetuned checkpoint (LoRA adapter or full); default "
                                                      "generation.checkpoint, else the base model")
    p.add_argument("--strength", type=float, default=1.0, help="LoRA strength for --checkpoint (default 1)")
    p.add_argument("--ab", action="store_true", help="A/B: --compare-to (default the base) vs --checkpoint")
    p.add_argument("--compare-to", default=None, help="A side of an A/B: 'base' or a checkpoint folder")
    p.add_argument("--sweep", default=None, metavar="0,0.5,1", help="LoRA strength sweep (comma-separated)")
    p.add_argument("--lyrics", default=None)
    p.add_argument("--description", default=None)
    p.add_argument("--prompt-audio", default=None, help="audio file; its first prompt-length seconds are the prompt")
    p.add_argument("--prompt-tokens", default=None, help=".npy/.pt file of [3, P] prompt tokens")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-seconds", type=float, default=None,
                   help=f"song length (default generation.max_seconds, else {DEFAULT_GENERATE_SECONDS:g} s)")
    p.add_argument("--max-frames", type=int, default=None, help="length in frames (overrides --max-seconds)")
    _sampling_flags(p)
    # checked in _generate against core.export.generate's list: importing it here would make --help slow
    p.add_argument("--format", default=None, dest="audio_format", help="wav (default) or flac")
    p.add_argument("--out", default=None, help="output folder (default <workspace>/generations/<time>_<kind>)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-val-loss", action="store_true", help="skip the held-out validation loss")
    p.add_argument("--dataset", default=None, help="prepared dataset for the validation loss (default: the latest)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")

    _push_arguments(cmd("push", _push, "push a LoRA adapter and/or merged model (+ card with audio samples, + "
                                       "optionally the prepared dataset) to the Hugging Face Hub. Private by "
                                       "default. Token: --token-stdin, HF_TOKEN, or `hf auth login`"))
    from core.cli_pairs import add_commands  # argparse only; torch loads when a command runs
    add_commands(cmd)
    from core.cli_timing import add_command as add_timing
    add_timing(cmd)
    return ap


def _push_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo-id", default=None, help="owner/name (default hub.repo_id)")
    p.add_argument("--adapter", default=None, help="LoRA checkpoint folder (<run>/checkpoints/step-N)")
    p.add_argument("--merged", default=None, help="merged export folder (`merge`)")
    p.add_argument("--samples", default=None, help="generation folder with manifest.json (A/B or sweep)")
    p.add_argument("--dataset", nargs="?", const="", default=None,
                   help="also push the prepared dataset cache (optionally its folder) to a dataset repo")
    p.add_argument("--dataset-repo-id", default=None)
    vis = p.add_mutually_exclusive_group()
    vis.add_argument("--public", action="store_true", help="make the new repo public (default private)")
    vis.add_argument("--private", action="store_true")
    p.add_argument("--update", action="store_true", help="add a commit to an existing repo of yours")
    p.add_argument("--token-stdin", action="store_true", help="read a one-time token from stdin (never stored)")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--json", action="store_true")


COMMANDS = ("model-info", "prepare", "train", "merge", "generate", "push", "candidates", "pairs", "timing")


def main(argv: Optional[list[str]] = None, prog: str = "python -m core") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
