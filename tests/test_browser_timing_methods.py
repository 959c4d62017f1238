"""The Timing tab's proposals in the real studio (headless Chromium): a song imported without lyrics,
SongPrep's output pasted and proposed (side by side with the saved starts, per-section confidence),
accepted (its sheet becomes the lyrics, its starts the timing, source songprep); the vocal-activity
method refuses plainly on a mix; an LRC picked for one song is cleared when another song is picked.
Screenshots to tests/artifacts/."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from tests.studio_server import (ART, browser_page, bulk_import, open_tab, pick, running_studio, sync_playwright,
                                 wait_text)

sync_playwright()  # skips this module without Chromium/playwright

SONGPREP = ("[intro][0.00:3.00] ; [verse][3.00:9.00]lights on the water, we drift along ; "
            "[chorus][9.00:14.00]hold on, hold on")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with running_studio(tmp_path_factory.mktemp("browser-timing-methods-ws")) as (url, demo):
        yield url, demo.studio_ctx.ws


def _songs(d):
    sr = 16000
    t = np.arange(14 * sr) / sr
    out = []
    for name, f in (("harbour", 330), ("second_song", 220)):
        x = 0.3 * np.sin(2 * np.pi * f * t) * (t >= 3) + 0.05 * np.sin(2 * np.pi * 110 * t)
        sf.write(d / f"{name}.wav", np.stack([x, x], 1).astype(np.float32), sr)
        out.append(d / f"{name}.wav")
    (d / "harbour.lrc").write_text("[00:03.00]lights on the water\n", encoding="utf-8")
    return out


def test_songprep_proposal_compared_and_accepted(studio, tmp_path):
    url, ws = studio
    files = _songs(tmp_path)
    with browser_page(height=1900) as pg:
        pg.goto(url)
        pg.wait_for_selector("#tab-data")
        bulk_import(pg, files, "Imported 2")

        open_tab(pg, "1b")
        pick(pg, "timing-song", "harbour")
        wait_text(pg, "#timing-status", r"Timing source")

        # an LRC picked for this song does not stay loaded for the next one
        pg.locator("#timing-lrc input[type=file]").set_input_files(str(tmp_path / "harbour.lrc"))
        pg.wait_for_timeout(1000)
        assert "harbour" in pg.locator("#timing-lrc").inner_text()
        pick(pg, "timing-song", "second_song")
        pg.wait_for_timeout(1500)
        assert "harbour" not in pg.locator("#timing-lrc").inner_text()
        pick(pg, "timing-song", "harbour")
        wait_text(pg, "#timing-status", r"Timing source: none")

        # SongPrep's output, proposed: the table and the sheet for review
        pick(pg, "timing-method", "SongPrep output")
        pg.locator("#timing-songprep textarea").fill(SONGPREP)
        pg.locator("#btn-timing-propose").click()
        wait_text(pg, "#timing-proposal", r"SongPrep output")
        table = pg.locator("#timing-proposal").inner_text()
        assert "3 [chorus]" in table and "9.00 (1.00)" in table and "lights on the water" in table
        pg.screenshot(path=str(ART / "timing-methods-1-proposal.png"), full_page=True)

        # accept all: the sheet becomes the lyrics, the starts the timing (source songprep)
        pg.locator("#btn-timing-accept").click()
        wait_text(pg, "#timing-status", r"Proposal accepted for harbour \(source: songprep\)")
        assert pg.locator("#timing-start-3 input").input_value() == "9"
        pg.screenshot(path=str(ART / "timing-methods-2-accepted.png"), full_page=True)
        song = json.loads((ws.songs_dir / "harbour" / "song.json").read_text())
        assert song["timing"]["source"] == "songprep"
        assert [s["start_s"] for s in song["timing"]["sections"]] == [0.0, 3.0, 9.0]
        assert song["gt_lyric"].startswith("[intro-short] ; [verse] lights on the water")

        # vocal activity on a mix with no clear breaks says so instead of proposing
        pick(pg, "timing-method", "Vocal activity")
        pg.locator("#btn-timing-propose").click()
        wait_text(pg, "#timing-proposal", r"Vocal activity proposes nothing: the vocal estimate cannot place")
        pg.screenshot(path=str(ART / "timing-methods-3-vocal-refused.png"), full_page=True)
