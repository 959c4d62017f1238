"""`songgen-studio`: with no command, open the studio in the browser (the same flags as `python app.py`);
with one of the headless commands (`songgen-studio prepare --config my.yaml`, ...), run it (core.cli)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional


def serve(argv: Optional[list[str]] = None, prog: str = "songgen-studio") -> int:
    """Start the studio server (blocks until it is stopped)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from core.cli import COMMANDS

    p = argparse.ArgumentParser(prog=prog, description="SongGen Studio: no-code finetuning for SongGeneration (LeVo). "
                                f"Headless: {prog} {{{','.join(COMMANDS)}}} --help")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (0.0.0.0 to serve your network / a container)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--workspace", default=None, help="folder for uploads, datasets, runs, exports")
    p.add_argument("--lang", default=os.environ.get("STUDIO_LANG", "en"), choices=["en", "zh"])
    p.add_argument("--import-root", action="append", default=[], metavar="FOLDER",
                   help="a folder whose files an imported metadata.jsonl may name by path (repeatable); "
                        "without it only uploaded files are read")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    args = p.parse_args(argv)

    from studio.app import build_app, launch

    demo = build_app(workspace=args.workspace, lang=args.lang, import_roots=tuple(args.import_root))
    print(f"SongGen Studio workspace: {demo.studio_ctx.base_ws.root}", flush=True)
    launch(demo, host=args.host, port=args.port, share=args.share)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    from core.cli import COMMANDS

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        from core.cli import main as core_main
        return core_main(argv, prog="songgen-studio")
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main())
