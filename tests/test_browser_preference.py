"""Preference tuning in headless Chromium (Debian's /usr/bin/chromium via Playwright): in Export,
generate two candidates, mark the first as preferred, see the pair in the table, start a short DPO
run, and see its reward-margin curve in the Train tab's plot. Base model: the reduced demo model of
tests/test_train.py picked as a checkpoint folder (what a user does in Train), demo codec.
Screenshots go to tests/artifacts/pref-*.png (git-ignored)."""
from __future__ import annotations

import re
import time

import pytest

from tests.studio_server import ART, browser_page, fill, running_studio, sync_playwright, wait_text

sync_playwright()  # skips this module without Chromium/playwright


def _demo_base(ws):
    """The reduced demo model of tests/test_train.py, picked as a checkpoint folder (what a user does in Train)."""
    from studio.state import Workspace
    from tests.test_train import make_small_demo
    ckpt = make_small_demo(ws)
    Workspace(ws).set_state(base_kind="folder", base_path=str(ckpt), base_model=str(ckpt), **{"data.codec": "demo"})


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    ws = tmp_path_factory.mktemp("pref-browser-ws")
    with running_studio(ws, setup=_demo_base) as (url, _):
        yield url, ws


def _legend(pg) -> str:
    """Every text drawn in the loss plot's SVG (legend labels included)."""
    return pg.evaluate("""() => Array.from(document.querySelectorAll('#loss-plot svg text'))
                             .map(t => t.textContent).join('\\n')""")


def _drawn_lines(pg) -> int:
    """Line marks of the loss plot that are really drawn (a colour, not stroke: none)."""
    return pg.evaluate("""() => Array.from(document.querySelectorAll('#loss-plot g.mark-line path'))
        .filter(p => (p.getAttribute('d') || '').includes('L') && getComputedStyle(p).stroke !== 'none').length""")


def test_mark_preference_and_run_dpo(app_url):
    url, ws = app_url
    with browser_page(height=2200) as pg:
        pg.goto(url)
        pg.wait_for_selector("#banner-demo-model")
        pg.get_by_role("tab", name=re.compile(r"^4 ·")).click()
        pg.wait_for_timeout(400)
        fill(pg, "#gen-seconds", "1")
        pg.locator("#pref-box button").first.click()  # open the accordion
        wait_text(pg, "#pref-count", r"0 pair")

        pg.locator("#btn-pref-generate").click()
        pg.wait_for_selector("#pref-cand-1 [data-testid='download-link']", timeout=180_000)
        names = [pg.locator(f"#pref-cand-{i} [data-testid='download-link']").get_attribute("download") for i in (0, 1)]
        assert names[0].startswith("cand-0_seed0") and names[1].startswith("cand-1_seed1"), names
        pg.locator("#pref-chosen label").filter(has_text="Candidate 1").click()
        pg.locator("#pref-rejected label").filter(has_text="Candidate 2").click()
        pg.screenshot(path=str(ART / "pref-1-candidates.png"), full_page=True)
        pg.locator("#btn-pref-mark").click()
        wait_text(pg, "#pref-msg", r"1 pair\(s\) added, 0 skipped")
        wait_text(pg, "#pref-count", r"1 pair")
        assert re.search(r"\b0\b.*\b1\b", pg.locator("#pref-pairs").inner_text(), re.S)  # seeds 0 over 1

        fill(pg, "#pref-steps", "4")
        pg.locator("#btn-pref-start").click()
        msg = wait_text(pg, "#pref-msg", r"DPO run .* started", 30)
        run = re.search(r"DPO run (\S+) started", msg.replace("`", "")).group(1)
        pg.screenshot(path=str(ART / "pref-2-marked.png"), full_page=True)

        pg.get_by_role("tab", name=re.compile(r"^3 ·")).click()
        assert run in pg.locator("#run-pick input").input_value()
        deadline = time.time() + 240
        while time.time() < deadline and "reward_margin" not in _legend(pg):
            pg.wait_for_timeout(1000)
        wait_text(pg, "#run-status", "done", max(5, deadline - time.time()))
        pg.wait_for_timeout(2500)
        pg.screenshot(path=str(ART / "pref-3-dpo-plot.png"), full_page=True)
        legend, drawn = _legend(pg), _drawn_lines(pg)
    from core.runs import store as runs
    recs, _ = runs.read_metrics(ws / "runs" / run)
    m = [r for r in recs if r.get("type") == "metrics"]
    assert [r["step"] for r in m] == [1, 2, 3, 4] and all("reward_margin" in r for r in m)
    assert m[-1]["reward_margin"] > 0  # the one pair is learned: chosen above rejected
    cfg = runs.load_run_config(ws / "runs" / run)
    assert cfg.training.objective == "dpo" and cfg.training.type == "lora"
    # the plot: reward-margin curves in the legend and drawn (pref-3-dpo-plot.png)
    assert "reward_margin (smoothed)" in legend and drawn >= 4, (drawn, legend)
