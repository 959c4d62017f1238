"""`python app.py` -- open SongGen Studio in the browser (the Space entry; installed, `songgen-studio`).

Flags: --host, --port, --workspace (default $STUDIO_HOME, /data/songgen-studio on a Space with
persistent storage, else ./workspace), --lang en|zh. Gradio analytics are off unless the
environment turns them on.
"""
from __future__ import annotations

import sys

from studio.cli import serve

if __name__ == "__main__":
    sys.exit(serve(prog="python app.py"))
