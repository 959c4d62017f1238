"""A newcomer's first run in headless Chromium, on the demo model: a timed 190-s song (every section longer
than the Quick-look preset's 6-s crop) is tokenized; the duration plot gets its bar and the token budget
shows the two section-aligned items prepare cut; the Train form's crop follows the data and the trainer's
check says it will take it; the default preset's first run starts and trains; after a reload the form
shows the settings that run used. Screenshots go to tests/artifacts/first-run-*.png."""
from __future__ import annotations

import re

import pytest

from tests.studio_server import ART, browser_page, fill, running_studio, sync_playwright, wait_text

sync_playwright()  # skips this module without Chromium/playwright


def _setup(ws):
    from studio.state import Workspace
    from tests.datagen import write_song
    from tests.test_agreement import LRC
    w = Workspace(ws)
    w.set_state(**{"data.codec": "demo", "data.val_fraction": 0.0})
    src = ws.parent / f"{ws.name}-src"
    wav = write_song(src / "north_road.wav", seconds=190.0, sr=16000, seed=1)
    (src / "north_road.lrc").write_text(LRC, encoding="utf-8")
    idx = w.add_song(wav, "", "pop")
    w.attach_lrc(idx, src / "north_road.lrc")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    ws = tmp_path_factory.mktemp("first-run-ws")
    with running_studio(ws, setup=_setup) as (url, _):
        with browser_page() as pg:
            yield pg, url, ws


def _tab(pg, n: int):
    pg.get_by_role("tab", name=re.compile(rf"^{n} ·")).click()
    pg.wait_for_timeout(400)


def _value(pg, sel: str) -> str:
    return pg.locator(f"{sel} input").first.input_value()


def test_first_run_with_the_default_preset_on_timed_long_songs(studio):
    pg, url, ws = studio
    pg.goto(url)
    _tab(pg, 2)
    pg.locator("#btn-tokenize").click()
    wait_text(pg, "#tok-summary", "Prepared dataset", 240)
    pg.wait_for_timeout(1500)
    assert pg.locator("#tok-hist g.mark-rect path").count() >= 1, "no bar in the duration plot after the first tokenize"
    budget = pg.locator("#tok-budget").inner_text()
    assert "section-aligned item 1 of 2" in budget and "cropped" not in budget, budget
    pg.screenshot(path=str(ART / "first-run-tokenize-en.png"), full_page=True)

    _tab(pg, 3)
    pg.locator("#optim-acc button").first.click()
    pg.wait_for_timeout(400)
    deadline_note = wait_text(pg, "#preset-note", "raised to 751", 30)
    assert _value(pg, "#max-frames") == "751", deadline_note
    wait_text(pg, "#estimate", "The trainer takes these data and settings", 60)
    fill(pg, "#steps", "3")
    pg.wait_for_timeout(800)
    pg.locator("#btn-start").click()
    wait_text(pg, "#train-msg", "Started", 60)
    wait_text(pg, "#run-status", "done", 420)
    assert "error" not in pg.locator("#run-status").inner_text().lower()
    pg.screenshot(path=str(ART / "first-run-train-en.png"), full_page=True)

    pg.reload()
    pg.wait_for_selector("#banner-demo-model")
    _tab(pg, 3)
    pg.locator("#optim-acc button").first.click()
    pg.wait_for_timeout(1500)
    assert _value(pg, "#max-frames") == "751" and _value(pg, "#steps") == "3", "the last settings did not come back"
    pg.screenshot(path=str(ART / "first-run-reload-en.png"), full_page=True)
