"""Section timing in the real studio (headless Chromium): import a song with its LRC in the Data tab, open
the Timing tab, see one start field per section, change one start with the keyboard, save, and find it
saved (status, song.json, metadata.jsonl for prepare); play from a section. Screenshots to tests/artifacts/."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from tests.studio_server import (ART, browser_page, bulk_import, open_tab, pick, running_studio, sync_playwright,
                                 wait_text)

sync_playwright()  # skips this module without Chromium/playwright

LRC = ("[ti:Timing test]\n[00:00.00][intro]\n[00:03.00][verse] lights on the water\n[00:06.00] we drift along\n"
       "[00:09.00][chorus] hold on hold on\n")


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory):
    with running_studio(tmp_path_factory.mktemp("browser-timing-ws")) as (url, demo):
        yield url, demo.studio_ctx.ws


def _song_files(d):
    sr = 16000
    t = np.arange(12 * sr) / sr
    voice = 0.3 * np.sin(2 * np.pi * 330 * t) * (t >= 3)
    pad = 0.05 * np.sin(2 * np.pi * 110 * t)
    sf.write(d / "night_drive.wav", np.stack([voice + pad, voice + pad], 1).astype(np.float32), sr)
    (d / "night_drive.lrc").write_text(LRC, encoding="utf-8")
    return [d / "night_drive.wav", d / "night_drive.lrc"]


def test_lrc_then_adjust_one_section_start(studio_url, tmp_path):
    url, ws = studio_url
    files = _song_files(tmp_path)
    with browser_page(height=1500) as pg:
        pg.goto(url)
        pg.wait_for_selector("#tab-data")

        # Data tab: import the audio with its same-named LRC
        bulk_import(pg, files, "Imported 1")

        # Timing tab: the LRC's sections with their starts
        open_tab(pg, "1b")
        pick(pg, "timing-song", "night_drive")
        wait_text(pg, "#timing-status", r"Timing source: lrc")
        assert pg.locator("#timing-start-3").is_visible() and not pg.locator("#timing-start-4").is_visible()
        assert "[verse]" in pg.locator("#timing-start-2").inner_text()
        assert pg.locator("#timing-start-2 input").input_value() == "3"
        pg.wait_for_selector("#timing-plot img")
        pg.screenshot(path=str(ART / "timing-1-lrc.png"), full_page=True)

        # keyboard: focus the verse field, type a new start, Tab to the next field, save
        field = pg.locator("#timing-start-2 input")
        field.click()
        field.press("Control+a")
        field.type("3.4")
        field.press("Tab")
        focused = pg.evaluate("() => document.activeElement.closest('[id^=timing-start-]')?.id")
        assert focused == "timing-start-3"          # Tab goes to the next section's start
        pg.locator("#btn-timing-save").click()
        wait_text(pg, "#timing-status", r"saved \(source: edited\)")
        wait_text(pg, "#timing-status", r"Timing source: edited")
        assert pg.locator("#timing-start-2 input").input_value() == "3.4"
        saved = ws.song("night_drive")["timing"]
        assert saved["source"] == "edited"
        assert [s["start_s"] for s in saved["sections"]] == [0.0, 3.4, 9.0]
        row = json.loads(ws.metadata_path.read_text(encoding="utf-8").splitlines()[0])
        assert row["timing"] == saved and row["lrc"].endswith("lyrics.lrc")

        # play from the chorus: a clip that starts there
        pg.locator("#timing-play-pick input").click()
        pg.get_by_role("option", name="3 [chorus]").click()
        pg.wait_for_selector("#timing-clip audio, #timing-clip [data-testid='waveform-controls'], #timing-clip button",
                             timeout=30_000)
        clip = ws.songs_dir / "night_drive" / "clip.wav"
        pg.wait_for_timeout(500)
        assert clip.is_file() and abs(sf.info(str(clip)).duration - 3.0) < 0.01
        pg.screenshot(path=str(ART / "timing-2-saved.png"), full_page=True)

        # the edit survives a reload
        pg.reload()
        pg.get_by_role("tab", name=re.compile(r"^1b ·")).click()
        pg.locator("#timing-song input").click()
        pg.get_by_role("option", name="night_drive").click()
        wait_text(pg, "#timing-status", r"Timing source: edited")
        assert pg.locator("#timing-start-2 input").input_value() == "3.4"
