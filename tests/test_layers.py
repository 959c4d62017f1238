"""core's packages import only downwards: a module may import its own package and the layers below it.

The order (lowest first) is the map in README "Layout": the model knows no dataset, trainer or file of songs;
text, audio, codec and timing know nothing of data or training; nothing in core imports the studio."""
from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"

# lowest first; a name is a top-level module or package of core
LAYERS = [
    {"fsutil", "tokens", "weights", "errors", "sampling", "threads"},
    {"config"},
    {"text", "audio"},
    {"codec"},
    {"timing"},
    {"model"},
    {"data"},
    {"runs"},
    {"preference"},
    {"training"},
    {"export"},
    {"cli", "cli_pairs", "cli_timing", "train", "__main__", "__init__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _unit(module: str) -> str:
    """'core.training.trainer' -> 'training'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "core":
                out += [(node.lineno, f"core.{a.name}") for a in node.names]
            elif node.module.startswith(("core.", "studio")):
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith(("core.", "studio"))]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import at line {node.lineno}; write it absolute")
    return out


def test_every_core_module_has_a_layer():
    units = {(p.relative_to(CORE).parts[0]).removesuffix(".py") for p in CORE.rglob("*.py")}
    assert units <= set(RANK), f"give these a layer in LAYERS: {sorted(units - set(RANK))}"


def test_core_imports_point_down():
    bad = []
    for path in sorted(CORE.rglob("*.py")):
        own = _unit("core." + ".".join(path.relative_to(CORE).with_suffix("").parts))
        for line, target in _imports(path):
            if target.startswith("studio"):
                bad.append(f"{path.relative_to(CORE.parent)}:{line} imports the studio ({target})")
                continue
            other = _unit(target)
            if other != own and RANK[other] > RANK[own]:
                bad.append(f"{path.relative_to(CORE.parent)}:{line} ({own}) imports {target} ({other}), a layer above")
    assert not bad, "\n".join(bad)
