"""One way for tests to run the real studio: a fresh workspace (demo-mode lock off, no Space) served
on a free loopback port, plus the Chromium settings and page helpers the browser tests share."""
from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Debian's chromium; never `playwright install`
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ART = Path(__file__).resolve().parent / "artifacts"  # screenshots (git-ignored)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(demo) -> str:
    """Launch a built studio on a free loopback port (non-blocking) -> its URL; demo.close() stops it."""
    from studio.app import launch
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    return f"http://127.0.0.1:{port}/"


@contextlib.contextmanager
def running_studio(ws: Path, setup: Optional[Callable[[Path], None]] = None, **build) -> Iterator[tuple[str, object]]:
    """The studio on `ws` at http://127.0.0.1:<free port>/ -> (url, demo). `setup(ws)` runs before the
    app is built (e.g. to pick a base model); `build` goes to studio.app.build_app."""
    os.environ["STUDIO_HOME"] = str(ws)
    os.environ.pop("SPACE_ID", None)
    os.environ["STUDIO_DEMO_MODE"] = "0"
    if setup is not None:
        setup(ws)
    from studio.app import build_app
    demo = build_app(workspace=ws, **build)
    try:
        yield serve(demo), demo
    finally:
        demo.close()


def sync_playwright():
    """playwright's sync API, or the calling test module is skipped with the reason."""
    import pytest
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api").sync_playwright


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1600, timeout_ms: int = 60_000):
    """A headless Chromium page (the browser closes on exit)."""
    ART.mkdir(exist_ok=True)
    with sync_playwright()() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            pg = browser.new_page(viewport={"width": width, "height": height})
            pg.set_default_timeout(timeout_ms)
            yield pg
        finally:
            browser.close()


def wait_text(pg, sel: str, pattern: str, timeout_s: float = 60) -> str:
    """Poll the element's text until it matches `pattern`; the last text is in the failure."""
    deadline = time.time() + timeout_s
    txt = ""
    while time.time() < deadline:
        txt = pg.locator(sel).inner_text()
        if re.search(pattern, txt):
            return txt
        pg.wait_for_timeout(300)
    raise AssertionError(f"{sel}: {pattern!r} not seen within {timeout_s}s; last text: {txt[:500]!r}")


def fill(pg, sel: str, value: str) -> None:
    """Type into a Gradio textbox/number and leave it, so its change event fires."""
    box = pg.locator(f"{sel} input, {sel} textarea").first
    box.fill(value)
    box.press("Tab")


# ---- walking the page -------------------------------------------------------------------------------
def open_tab(pg, n: str | int) -> None:
    """Open tab "<n> · ..." (1, "1b", 2, ...) by its number."""
    pg.get_by_role("tab", name=re.compile(rf"^{n} ·")).click()
    pg.wait_for_timeout(400)


def pick(pg, elem_id: str, option: str) -> None:
    """Choose `option` in the Gradio dropdown #elem_id."""
    pg.locator(f"#{elem_id} input").click()
    pg.get_by_role("option", name=option).click()


def bulk_import(pg, files, imported: str = "Imported") -> None:
    """Data tab, "Import many": choose `files` (audio with same-named sidecars) and import them; waits for
    the message that starts with `imported` (e.g. "Imported 2")."""
    pg.get_by_role("tab", name="Import many").click()
    with pg.expect_file_chooser() as fc:
        pg.locator("#bulk-files button").first.click()
    fc.value.set_files([str(f) for f in files])
    pg.wait_for_timeout(1500)
    pg.locator("#btn-import").click()
    wait_text(pg, "#data-msg", imported)


def to_chinese(pg) -> None:
    """The page's own language switch (saved in the browser, then a reload), as a user would."""
    pg.locator("#lang-switch label", has_text="中文").click()
    pg.wait_for_load_state("load")
    pg.wait_for_selector("#tab-data")


def english_sentences(text: str, keep: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Stretches of text between Chinese characters holding three or more English words: a sentence left
    untranslated in a Chinese page (paths, numbers, anything in brackets -- [verse], [mm:ss.xx] -- and the
    `keep` names, lower case, do not count)."""
    text = re.sub(r"\S*/\S*|\[[^\]]*\]|\b\d[\w.:-]*", " ", text)
    found = []
    for stretch in re.split(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+", text):
        words = [w for w in re.findall(r"[A-Za-z]{3,}", stretch) if w.lower() not in keep]
        if len(words) >= 3:
            found.append(stretch.strip())
    return found
