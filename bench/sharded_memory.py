"""Per-GPU memory of the studio's training presets on the released model sizes, for each
`training.distributed` choice (core.training.estimate.estimate_memory + sharded_memory; the README table).

    python bench/sharded_memory.py            # markdown table on stdout

The model sizes are the official config values (shared/reference/lelm.md: base D1536 F8960 H12 L28+12,
large / v2-large D2048 F11008 H16 L36+12) written into a copy of the demo checkpoint's config.yaml;
no weights are needed (the parameter count then comes from the layout).
"""
from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import load_config  # noqa: E402
from core.training.estimate import estimate_memory, sharded_memory  # noqa: E402
from core.model.demo import DEMO_NAME, demo_root  # noqa: E402
from core.training.demo_pretrain import create_demo_model  # noqa: E402
from studio.tabs.train import PRESETS  # noqa: E402

SIZES = {"base (2.8 B)": (1536, 8960, 12, 28, 12), "large / v2-large (5.1 B)": (2048, 11008, 16, 36, 12)}
LAYOUTS = [("ddp", 1), ("fsdp", 2), ("fsdp", 4), ("fsdp", 8), ("deepspeed_zero2", 8), ("deepspeed_zero3", 8)]


def sized_checkpoint(root: Path, name: str, dims) -> Path:
    demo = demo_root(root / "demo")
    if not (demo / "ckpt" / DEMO_NAME / "config.yaml").is_file():
        create_demo_model(demo)
    out = root / name
    shutil.copytree(demo, out, ignore=shutil.ignore_patterns("model.pt"))
    cfg = out / "ckpt" / DEMO_NAME / "config.yaml"
    text = cfg.read_text(encoding="utf-8")
    for key, value in zip(("dim", "intermediate_size", "num_heads", "num_layers", "num_layers_sub"), dims):
        text = re.sub(rf"(?m)^(\s+{key}): \d+$", rf"\g<1>: {value}", text, count=1)
    cfg.write_text(text, encoding="utf-8")
    return cfg.parent


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print("| model | preset | " + " | ".join(f"{d} x{n}" for d, n in LAYOUTS) + " |")
        print("|---|---|" + "---|" * len(LAYOUTS))
        for size, dims in SIZES.items():
            ckpt = sized_checkpoint(Path(tmp), re.sub(r"\W+", "_", size), dims)
            for preset, values in PRESETS.items():
                # a preset named for one model size ("· base ·", "· large ·") is shown for that size only
                named = " · base · " in preset or " · large · " in preset
                if preset.startswith("Quick") or (named and f" · {size.split()[0]} · " not in preset):
                    continue
                cfg = load_config(None, {**{k: v for k, v in values.items() if v is not None},
                                    "paths.base_model_path": str(ckpt), "training.mixed_precision": "bf16"})
                est = estimate_memory(cfg)
                cells = [f"{sharded_memory(est, d, n):.1f}" for d, n in LAYOUTS]
                print(f"| {size} | {preset} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
