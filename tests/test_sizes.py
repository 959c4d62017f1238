"""core stays readable: no function over 80 lines, no module over 500 (the studio's Gradio layout builders are
the one exception the project allows, so only core is checked here)."""
from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"
MAX_FUNCTION, MAX_MODULE = 80, 500


def test_no_long_function_or_module_in_core():
    long = []
    for path in sorted(CORE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(CORE.parent)
        if len(text.splitlines()) > MAX_MODULE:
            long.append(f"{name}: {len(text.splitlines())} lines (module)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION:
                    long.append(f"{name}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "split these along their seams:\n" + "\n".join(long)
