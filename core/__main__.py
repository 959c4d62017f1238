"""Headless entry: `python -m core <command> [--config cfg.yaml] [...]`.

Each command lives in its own module as `cli(argv) -> int`, so its flags sit beside its code.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "model-info": ("core.model.info", "print a checkpoint's version, dims, parameter count, dtype and runtime root"),
    "prepare": ("core.data", "validate songs, separate, tokenize into the datasets cache"),
    "train": ("core.train", "finetune (full or LoRA) under accelerate; see `accelerate launch -m core.train`"),
    "merge": ("core.export", "merge a LoRA checkpoint into the base model (official layout)"),
    "generate": ("core.generate", "generate test songs, A/B and LoRA strength sweeps"),
    "push": ("core.hub", "push an adapter / merged model / dataset to the Hugging Face Hub"),
}


def usage() -> str:
    rows = "\n".join(f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: python -m core <command> [options]\n\ncommands:\n{rows}\n\n`python -m core <command> --help` for a command's options."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.cli(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
