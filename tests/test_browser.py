"""The whole studio flow in headless Chromium (Debian's /usr/bin/chromium driven by Playwright) on the
demo model and demo codec, in a fresh workspace: upload three songs (one mono), fix a lyric, tokenize
(one song held out for validation by the split rule), start LoRA training and watch the loss plot gain
points during this first run, see Start disabled and a second start through the API refused, press
Save now, reload and see it still updating, let the run finish (a validation curve on the plot, the
Save-now checkpoint kept and offered in Export), merge, generate, play the A/B pair, then switch the
page to Chinese and see a QC reason and a run status in Chinese.
Screenshots of each tab, English and Chinese, go to tests/artifacts/ (git-ignored)."""
from __future__ import annotations

import re
import time

import pytest

from tests.paths import SAMPLE_WAV
from tests.studio_server import ART, browser_page, running_studio, sync_playwright, wait_text

sync_playwright()  # skips this module without Chromium/playwright
SAMPLE = SAMPLE_WAV


def _synth(path, seconds: float = 12.0):
    from tests.test_studio_api import synth_song
    return synth_song(path, seconds=seconds)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    ws = tmp_path_factory.mktemp("browser-ws")
    with running_studio(ws) as (url, _):
        yield url, ws


@pytest.fixture(scope="module")
def page(app_url):
    with browser_page() as pg:
        yield pg


def _tab(pg, n: int):
    pg.get_by_role("tab", name=re.compile(rf"^{n} ·")).click()
    pg.wait_for_timeout(400)


def _upload(pg, sel: str, path) -> None:
    """Upload through the component's own button (Gradio creates the file input on click)."""
    with pg.expect_file_chooser() as fc:
        pg.locator(f"{sel} button.upload-container, {sel} [aria-label*='Click to upload'], {sel} button").first.click()
    fc.value.set_files(str(path))
    pg.wait_for_timeout(1200)


def _text(pg, sel: str) -> str:
    return pg.locator(sel).inner_text()


def _plot_points(pg) -> int:
    """Vertices drawn in the loss plot's line marks (Vega SVG paths)."""
    return pg.evaluate("""() => {
        let n = 0;
        document.querySelectorAll('#loss-plot g.mark-line path').forEach(p => {
            const d = p.getAttribute('d') || ''; n += (d.match(/[ML]/g) || []).length; });
        return n; }""")


def _step(pg) -> int:
    m = re.search(r"step (\d+) /", _text(pg, "#run-progress"))
    return int(m.group(1)) if m else -1


def _add_song(pg, path, lyric, desc, idx):
    _upload(pg, "#song-audio", path)
    pg.locator("#song-lyrics textarea").fill(lyric)
    pg.locator("#song-desc textarea, #song-desc input").first.fill(desc)
    pg.locator("#btn-add-song").click()
    wait_text(pg, "#data-msg", f"Added song {idx}")


def test_whole_flow(app_url, page, tmp_path):
    import soundfile as sf
    from gradio_client import Client

    url, ws = app_url
    pg = page
    pg.goto(url)
    pg.wait_for_selector("#banner-demo-model")
    assert "DEMO" in _text(pg, "#banner-demo-model")

    # ---- 1. data: three songs (one mono), one lyric fixed -------------------------------------
    song = _synth(tmp_path / "synth_song.wav")
    _add_song(pg, song, "[verse] lights on the water. we drift along ; [chorus] hold on. hold on",
              "male, pop, uplifting", "synth_song")
    assert pg.locator("#song-lyrics textarea").input_value() == ""  # the form was emptied after adding
    mono = tmp_path / "mono_song.wav"
    wav, sr = sf.read(str(_synth(tmp_path / "stereo.wav", seconds=9.0)))
    sf.write(str(mono), wav[:, 0], sr)
    _add_song(pg, mono, "[verse] one voice alone. in the dark ; [chorus] sing it back", "female, folk", "mono_song")
    wait_text(pg, "#songs-table", "mono")
    _upload(pg, "#song-audio", SAMPLE)
    pg.locator("#song-lyrics textarea").fill("[Verse 1]\nthe night is young\nwe sing along\n\n[Chorus]\nla la la")
    pg.locator("#song-desc textarea, #song-desc input").first.fill("female, pop")
    pg.locator("#btn-add-song").click()
    wait_text(pg, "#data-msg", "Added song sample_prompt_audio")
    wait_text(pg, "#song-findings", "fixed")
    fixed = pg.locator("#lyric-fixed textarea").input_value()
    assert fixed.startswith("[verse] the night is young") and " ; [chorus] la la la" in fixed
    assert "[Verse 1]" in pg.locator("#lyric-original textarea").input_value()
    pg.locator("#btn-accept-fix").click()
    wait_text(pg, "#data-msg", "Saved lyrics of sample_prompt_audio")
    wait_text(pg, "#song-findings", r"\*?\*?(ok|warning)")
    table = _text(pg, "#songs-table")
    assert "synth_song" in table and "sample_prompt_audio" in table and "mono_song" in table
    pg.screenshot(path=str(ART / "1-data-en.png"), full_page=True)

    # ---- 2. tokenize: the default validation fraction (0.1) still holds one of three songs out ---
    _tab(pg, 2)
    pg.locator("#btn-tokenize").click()
    summary = wait_text(pg, "#tok-summary", "Prepared dataset", 180)
    assert "DEMO" in summary and re.search(r"validation 1\b", summary), summary
    pg.wait_for_timeout(800)
    pg.screenshot(path=str(ART / "2-tokenize-en.png"), full_page=True)

    # ---- 3. train: Quick look preset, first run in this workspace -----------------------------
    _tab(pg, 3)
    pg.locator("#optim-acc button").first.click()
    pg.wait_for_timeout(400)
    pg.locator("#max-frames input").fill("100")
    pg.locator("#max-frames input").press("Tab")
    pg.wait_for_timeout(500)
    pg.locator("#btn-start").click()
    wait_text(pg, "#train-msg", "Started", 30)
    wait_text(pg, "#run-status", "running|starting", 30)
    assert pg.locator("#btn-start").is_disabled(), "Start stays enabled while a run is active"
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="before starting another"):
        client.predict(training_max_steps=5, run_name="second", api_name="/start_run")
    assert not (ws / "runs" / "second").exists()
    deadline = time.time() + 180
    while time.time() < deadline and (_step(pg) < 2 or _plot_points(pg) < 2):
        pg.wait_for_timeout(1000)
    first_points = _plot_points(pg)
    if first_points < 2:
        pg.screenshot(path=str(ART / "3-train-no-points.png"), full_page=True)
    assert first_points >= 2, f"no points in the plot during the first run; progress: {_text(pg, '#run-progress')}"
    pg.locator("#btn-save-now").click()
    wait_text(pg, "#train-msg", "requested", 10)
    while time.time() < deadline and _plot_points(pg) <= first_points:
        pg.wait_for_timeout(1000)
    assert _plot_points(pg) > first_points, "the loss plot did not gain points"
    assert "core.train" in _text(pg, "#run-command")
    pg.screenshot(path=str(ART / "3-train-running-en.png"), full_page=True)

    pg.reload()
    pg.wait_for_selector("#banner-demo-model")
    _tab(pg, 3)
    wait_text(pg, "#run-status", "running|done", 30)
    wait_text(pg, "#run-status", "done", 240)
    pg.wait_for_timeout(2500)
    assert pg.locator("#btn-start").is_enabled(), "Start stays disabled after the run ended"
    assert "ETA —" in _text(pg, "#run-progress")
    pg.screenshot(path=str(ART / "3-train-done-en.png"), full_page=True)
    # five training series (raw + four smoothed) and the validation curve (an eval every 5 steps)
    lines = pg.locator("#loss-plot g.mark-line path").count()
    assert lines >= 6, f"no validation curve on the plot ({lines} lines)"
    cks = _text(pg, "#ckpt-table")
    assert "Save now" in cks and "end" in cks, cks

    # ---- 4. export: the Save-now checkpoint is offered; merge, generate, A/B ----------------------
    _tab(pg, 4)
    pg.locator("#btn-refresh-ckpt").click()
    pg.wait_for_timeout(1500)
    assert "step-" in pg.locator("#ckpt-pick input").input_value()
    # the dropdown's choices, as the page got them (the same event the Refresh button runs)
    options = [c[0] for c in client.predict(None, api_name="/list_checkpoints")["choices"]]
    assert any("Save now" in o for o in options) and options[0].startswith("step-"), options
    pg.locator("#gen-seconds input").fill("2")
    pg.locator("#gen-seconds input").press("Tab")
    pg.locator("#btn-merge").click()
    wait_text(pg, "#merge-msg", "Merged model", 120)
    assert "lora-merge" in _text(pg, "#merge-msg")
    pg.locator("#btn-generate").click()
    pg.wait_for_selector("#gen-audio [data-testid='download-link']", timeout=360_000)
    pg.locator("#btn-ab").click()
    wait_text(pg, "#ab-msg", r"Held-out validation loss.*A \d+\.\d+.*B \d+\.\d+", 240)
    pg.wait_for_selector("#ab-a [data-testid='download-link']", timeout=10_000)
    pg.wait_for_selector("#ab-b [data-testid='download-link']", timeout=10_000)
    played = 0
    for side in ("#ab-a", "#ab-b"):  # play each: the player's clock moves past 0:00
        pg.locator(f"{side} button.play-pause-button").first.click()
        t_end = time.time() + 10
        while time.time() < t_end and "0:01" not in _text(pg, side):
            pg.wait_for_timeout(200)
        played += "0:01" in _text(pg, side)
    pg.screenshot(path=str(ART / "4-export-en.png"), full_page=True)
    assert played == 2, "the A/B players did not start playing"

    # ---- 5. the language switch in the page: labels, a QC reason and a run status in Chinese ---------
    pg.locator("#lang-switch label", has_text="中文").click()
    pg.wait_for_load_state("load")
    pg.wait_for_selector("#banner-demo-model")
    _tab(pg, 1)
    zh_table = wait_text(pg, "#songs-table", "单声道", 30)  # the mono song's QC reason
    assert "警告" in zh_table or "正常" in zh_table
    pg.screenshot(path=str(ART / "1-data-zh.png"), full_page=True)
    _tab(pg, 2)
    pg.wait_for_timeout(800)
    pg.screenshot(path=str(ART / "2-tokenize-zh.png"), full_page=True)
    _tab(pg, 3)
    wait_text(pg, "#run-status", "已完成", 30)
    pg.wait_for_timeout(1500)
    pg.screenshot(path=str(ART / "3-train-zh.png"), full_page=True)
    _tab(pg, 4)
    pg.wait_for_timeout(800)
    pg.screenshot(path=str(ART / "4-export-zh.png"), full_page=True)
