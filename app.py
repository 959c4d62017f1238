"""`python app.py` -- open SongGen Studio in the browser.

Flags: --host, --port, --workspace (default $STUDIO_HOME, /data/songgen-studio on a Space with
persistent storage, else ./workspace), --lang en|zh. Gradio analytics are off unless the
environment turns them on.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="SongGen Studio: no-code finetuning for SongGeneration (LeVo)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (0.0.0.0 to serve your network / a container)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--workspace", default=None, help="folder for uploads, datasets, runs, exports")
    p.add_argument("--lang", default=os.environ.get("STUDIO_LANG", "en"), choices=["en", "zh"])
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    args = p.parse_args(argv)

    from studio.app import build_app, launch

    demo = build_app(workspace=args.workspace, lang=args.lang)
    print(f"SongGen Studio workspace: {demo.studio_ctx.ws.root}", flush=True)
    launch(demo, host=args.host, port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
