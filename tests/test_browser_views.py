"""Views that follow the run on screen, in headless Chromium (Debian's /usr/bin/chromium via Playwright),
on the reduced demo model of tests/test_train.py and the demo codec: the duration histogram has bars
after the first tokenize; a second run's plot gains its validation curve and a DPO run's plot its
reward curves (legend and y-axis title replaced) with no page reload; Save now on a finished run is
refused in the message box under the buttons, and the message stays; A/B of the DPO checkpoint ends
with both files; then the page in Chinese: no English sentence in the Train tab's outputs.
One workspace, runs of a few steps. Screenshots go to tests/artifacts/views-*.png (git-ignored)."""
from __future__ import annotations

import re
import time

import pytest

from tests.studio_server import (ART, browser_page, english_sentences, fill, running_studio, sync_playwright,
                                 wait_text)

sync_playwright()  # skips this module without Chromium/playwright


def _setup(ws):
    """The reduced demo model as the base, three short songs and the synthetic preference pairs of
    tests/test_dpo_train.py (so a DPO run can start without generating candidates)."""
    from core.codec import get_codec
    from studio import preference
    from studio.state import Workspace
    from tests.test_dpo_train import synthetic_pairs
    from tests.test_studio_api import synth_song
    from tests.test_train import make_small_demo

    ckpt = make_small_demo(ws)
    w = Workspace(ws)
    w.set_state(base_kind="folder", base_path=str(ckpt), base_model=str(ckpt), codec="demo", val_fraction=0.34)
    for i, secs in enumerate((7.0, 6.0, 5.5)):
        w.add_song(synth_song(ws / f"src{i}.wav", seconds=secs, seed=i),
                   "[verse] lights on the water. we drift along ; [chorus] hold on. hold on", "female, pop")
    store = preference._store(w)
    store.add(synthetic_pairs(get_codec(preference._cfg(w)))[:8])


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    ws = tmp_path_factory.mktemp("views-browser-ws")
    with running_studio(ws, setup=_setup) as (url, _):
        yield url, ws


def _tab(pg, n: int):
    pg.get_by_role("tab", name=re.compile(rf"^{n} ·")).click()
    pg.wait_for_timeout(400)


def _svg_text(pg, sel: str) -> str:
    """Every text drawn in a plot's SVG (axis titles and legend labels)."""
    return pg.evaluate(f"""() => Array.from(document.querySelectorAll('{sel} svg text'))
                             .map(t => t.textContent).join('\\n')""")


def _wait_svg(pg, sel: str, pattern: str, timeout_s: float) -> str:
    deadline, text = time.time() + timeout_s, ""
    while time.time() < deadline:
        text = _svg_text(pg, sel)
        if re.search(pattern, text):
            return text
        pg.wait_for_timeout(500)
    raise AssertionError(f"{sel}: {pattern!r} not drawn within {timeout_s}s; drawn: {text[-400:]!r}")


# names the Chinese page keeps as they are (model, format and unit names, the run's own names)
KEEP = {"lora", "dpo", "gpu", "cpu", "logits", "float32", "bf16", "flops", "min", "eta", "first", "second", "end"}


def _english(text: str) -> list[str]:
    return english_sentences(text, KEEP)


def _train(pg, name: str) -> None:
    fill(pg, "#run-name", name)
    pg.locator("#btn-start").click()
    wait_text(pg, "#train-msg", f"Started .*{name}", 30)
    wait_text(pg, "#run-status", f"done.*{name}", 300)


def test_views_follow_the_run_on_screen(app):
    url, ws = app
    with browser_page(width=1280, height=2000) as pg:
        pg.goto(url)
        pg.wait_for_selector("#banner-demo-model")

        # ---- the Songs table fits its box at 1280 px (status and reasons on screen) ----------------------
        pg.locator("#btn-check").click()
        wait_text(pg, "#songs-table", r"ok|warning", 60)
        pg.wait_for_timeout(800)
        widths = pg.evaluate("""() => { const t = document.querySelector('#songs-table table');
            const box = document.querySelector('#songs-table');
            return [t.getBoundingClientRect().right, box.getBoundingClientRect().right]; }""")
        pg.screenshot(path=str(ART / "views-0-data.png"), full_page=True)
        assert widths[0] <= widths[1] + 1, f"the Songs table runs past its box: {widths}"

        # ---- the first tokenize draws the duration histogram's bars -----------------------------------
        _tab(pg, 2)
        pg.locator("#btn-tokenize").click()
        wait_text(pg, "#tok-summary", "Prepared dataset", 240)
        pg.wait_for_timeout(1500)
        bars = pg.locator("#tok-hist g.mark-rect path").count()
        pg.screenshot(path=str(ART / "views-1-tokenize.png"), full_page=True)
        assert bars >= 1, "no bars in the duration histogram after the first tokenize"

        # ---- two SFT runs: the second one's plot gains its validation curve without a reload -----------
        _tab(pg, 3)
        pg.locator("#optim-acc button").first.click()
        pg.wait_for_timeout(400)
        for sel, value in (("#steps", "4"), ("#max-frames", "40"), ("#eval-every", "2")):
            fill(pg, sel, value)
        pg.wait_for_timeout(800)
        pg.locator("#next-run-acc button").first.click()
        pg.wait_for_timeout(600)
        assert "configs/next/config.yaml" in pg.locator("#next-command").inner_text()
        assert (ws / "configs" / "next" / "config.yaml").is_file(), "the next-run command names a missing file"
        _train(pg, "first")
        _train(pg, "second")
        legend = _wait_svg(pg, "#loss-plot", "validation loss", 30)
        pg.screenshot(path=str(ART / "views-2-second-run.png"), full_page=True)
        assert "loss (smoothed)" in legend and "reward" not in legend

        # ---- Save now on the finished run: refused where the user acted, and the message stays ---------
        pg.locator("#btn-save-now").click()
        wait_text(pg, "#train-msg", r"Save now refused: .*second.* is done", 15)
        pg.wait_for_timeout(3000)
        assert "refused" in pg.locator("#train-msg").inner_text()
        assert not list((ws / "runs").glob("*second*/control/save*"))

        # ---- a DPO run from the Export tab: the plot switches to its reward curves ----------------------
        fill(pg, "#run-name", "")  # the DPO run is then named dpo-lora
        _tab(pg, 4)
        pg.locator("#pref-box button").first.click()
        wait_text(pg, "#pref-count", r"8 pair")
        fill(pg, "#pref-steps", "3")
        pg.locator("#btn-pref-start").click()
        wait_text(pg, "#pref-msg", r"DPO run .* started", 30)
        _tab(pg, 3)
        wait_text(pg, "#run-status", "done.*dpo", 300)
        drawn = _wait_svg(pg, "#loss-plot", "reward_margin", 30)
        pg.wait_for_timeout(1500)
        drawn = _svg_text(pg, "#loss-plot")
        pg.screenshot(path=str(ART / "views-3-dpo-run.png"), full_page=True)
        assert "validation loss" not in drawn, "the DPO plot kept the SFT run's legend"
        assert "reward margin" in drawn.lower() and "DPO loss" in drawn, drawn  # y-axis title of a DPO run
        x_ticks = pg.evaluate("""() => Array.from(document.querySelectorAll(
            '#loss-plot g.role-axis[aria-label^="X-axis"] g.role-axis-label text')).map(t => t.textContent)""")
        assert x_ticks and all(re.fullmatch(r"\d+", t) for t in x_ticks), x_ticks  # whole steps, not 1.2, 1.4...

        # ---- A/B of the DPO checkpoint ends with both files and a note ---------------------------------
        _tab(pg, 4)  # the picker follows the Train tab's run: the DPO run's newest checkpoint
        deadline = time.time() + 30
        while time.time() < deadline and "dpo" not in pg.locator("#ckpt-pick input").input_value():
            pg.wait_for_timeout(500)
        assert "dpo" in pg.locator("#ckpt-pick input").input_value()
        fill(pg, "#gen-seconds", "1")
        pg.locator("#btn-ab").click()
        wait_text(pg, "#ab-msg", r"Same lyrics", 300)
        pg.wait_for_selector("#ab-b [data-testid='download-link']", timeout=10_000)
        pg.screenshot(path=str(ART / "views-4-dpo-ab.png"), full_page=True)
        pg.locator("#btn-push").click()  # no repository id: refused under the button, and it stays
        wait_text(pg, "#push-msg", "⚠", 30)
        pg.wait_for_timeout(3000)
        assert "⚠" in pg.locator("#push-msg").inner_text()

        # ---- Chinese: the Train tab's outputs hold no English sentence ----------------------------------
        pg.locator("#lang-switch label", has_text="中文").click()
        pg.wait_for_load_state("load")
        pg.wait_for_selector("#banner-demo-model")
        _tab(pg, 3)
        wait_text(pg, "#run-status", "已完成", 30)
        pg.wait_for_timeout(2500)
        pg.screenshot(path=str(ART / "views-5-train-zh.png"), full_page=True)
        for sel in ("#run-status", "#run-progress", "#estimate", "#ckpt-table", "#train-msg"):
            assert not _english(pg.locator(sel).inner_text()), f"{sel}: English in the Chinese page"
        plot = _svg_text(pg, "#loss-plot")
        assert "DPO 损失" in plot and "奖励差" in plot, plot
