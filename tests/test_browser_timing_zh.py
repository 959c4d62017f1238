"""The timing flow in Chinese (headless Chromium, the page switched to 中文 as a user does): a timed 190-s song
with its tagged LRC, a plain (untagged) LRC matched to a lyric sheet, a Chinese LRC (主歌/副歌 headers,
full-width punctuation) that gives a song its lyrics, a refused LRC, a SongPrep proposal and a vocal-activity
one, one section accepted and saved. Everything the Timing tab shows -- status, "Prepare will adjust", the
proposal table, notes, refusals -- holds no English sentence; then the Data tab's findings for the same
songs. Screenshots to tests/artifacts/timing-zh-*.png."""
from __future__ import annotations

import re

import pytest

from tests.studio_server import (ART, browser_page, english_sentences, open_tab, pick, running_studio, sync_playwright,
                                 to_chinese, wait_text)
from tests.test_agreement import LRC as TAGGED_LRC
from tests.test_lrc_as_people_have_it import PLAIN, SHEET

sync_playwright()  # skips this module without Chromium/playwright

ZH_LRC = ("[ti:河流]\n[00:00.00][前奏]\n[00:05.00][主歌] 啊，河流带我远行，\n[00:09.50]我在岸边等你。\n"
          "[00:15.00][副歌] 天很蓝，风很轻！\n[00:19.00]我们一起唱。\n")
BAD_LRC = "[00:01.00] the city lights are calling\nthis line has no time tag\n"
SONGPREP = ("[intro][0.00:7.50] ; [verse][7.50:17.50]the city lights are calling, i walk alone tonight ; "
            "[chorus][17.50:30.00]hold on hold on, we shine until the morning ; [inst][30.00:40.00] ; "
            "[verse][40.00:50.00]the river runs forever, it carries me away ; "
            "[chorus][50.00:62.00]hold on hold on, we shine until the morning ; [outro][62.00:70.00]")
# names a Chinese page keeps as they are: methods and products, file and format names
KEEP = {"songprep", "whisper", "lrc", "demucs", "demo", "mid", "side", "wav", "dbfs", "min_dur", "max_dur"}


def _setup(ws):
    from studio.state import Workspace
    from tests.datagen import write_song
    w = Workspace(ws)
    w.set_state(**{"data.codec": "demo", "data.val_fraction": 0.0})
    src = ws.parent / f"{ws.name}-src"
    (src / "north_road.lrc").parent.mkdir(parents=True, exist_ok=True)
    (src / "north_road.lrc").write_text(TAGGED_LRC, encoding="utf-8")
    idx = w.add_song(write_song(src / "north_road.wav", seconds=190.0, sr=16000, seed=1), "", "pop")
    w.attach_lrc(idx, src / "north_road.lrc")
    w.add_song(write_song(src / "city_lights.wav", seconds=70.0, sr=16000, seed=2), SHEET, "pop")
    w.add_song(write_song(src / "河流.wav", seconds=30.0, sr=16000, seed=3), "", "pop", idx="river")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    ws = tmp_path_factory.mktemp("timing-zh-ws")
    with running_studio(ws, setup=_setup) as (url, demo):
        yield url, demo.studio_ctx.ws


def _lyric_free(text: str) -> str:
    """The tab's text without the songs' own words (lyrics and LRC lines are the user's, in any language) and
    names (the songs' and their files')."""
    for line in (PLAIN + SHEET + TAGGED_LRC + SONGPREP + BAD_LRC).replace(";", "\n").replace(".", "\n").splitlines():
        words = re.sub(r"\[[^\]]*\]", " ", line).strip(" ,")
        if len(words.split()) >= 2:
            text = re.sub(re.escape(words), " ", text, flags=re.I)
    return re.sub(r"\b(north_road|city_lights|river)\b|\S+\.(wav|lrc)\b", " ", text)


def _no_english(pg, where: str, sel: str = "#tab-timing") -> str:
    for _ in range(100):  # Gradio's own "processing | 0.4s" while the last event's outputs still render
        text = pg.locator(sel).inner_text()
        if "processing |" not in text:
            break
        pg.wait_for_timeout(300)
    found = english_sentences(_lyric_free(text), KEEP)
    assert not found, f"{where}: English in the Chinese page: {found}"
    return text


def _use_lrc(pg, path) -> None:
    clear = pg.locator("#timing-lrc button[aria-label='清除']")
    if clear.count():  # the LRC picked before is still in the box
        clear.first.click()
        pg.wait_for_timeout(500)
    pg.locator("#timing-lrc input[type=file]").set_input_files(str(path))
    pg.wait_for_timeout(1000)
    pg.locator("#btn-timing-lrc").click()


def _lrc_for(pg, song: str, before: str, lrc, after: str) -> str:
    """Picks `song`, waits for its timing status, reads the LRC file into it -> the status after."""
    pick(pg, "timing-song", song)
    wait_text(pg, "#timing-status", before)
    _use_lrc(pg, lrc)
    return wait_text(pg, "#timing-status", after)


def _shot(pg, where: str, name: str) -> None:
    """No English outside the lyrics and names, then the whole page's screenshot."""
    _no_english(pg, where)
    pg.screenshot(path=str(ART / name), full_page=True)


def test_timing_tab_in_chinese(studio, tmp_path):
    url, ws = studio
    (tmp_path / "city_lights.lrc").write_text(PLAIN, encoding="utf-8")
    (tmp_path / "河流.lrc").write_text(ZH_LRC, encoding="utf-8")
    (tmp_path / "broken.lrc").write_text(BAD_LRC, encoding="utf-8")
    with browser_page(height=2200) as pg:
        pg.goto(url)
        pg.wait_for_selector("#tab-data")
        to_chinese(pg)
        open_tab(pg, "1b")

        # the timed long song with its tagged LRC: source, sections, what prepare will adjust
        pick(pg, "timing-song", "north_road")
        status = wait_text(pg, "#timing-status", r"时间来源：LRC")
        assert "准备数据时将调整" in status and "第 7 段 [outro-short] 长 30.0 秒：标记为 [outro-long]" in status, status
        _shot(pg, "tagged LRC", "timing-zh-1-tagged.png")

        # a plain LRC for a song with a lyric sheet: every start it knows filled, the breaks estimated (said)
        status = _lrc_for(pg, "city_lights", r"时间来源：无", tmp_path / "city_lights.lrc",
                          r"city_lights\.lrc 已保存到 city_lights")
        assert "其起点估计为" in status, status
        assert pg.locator("#timing-start-2 input").input_value() == "8"
        _shot(pg, "plain LRC", "timing-zh-2-plain.png")

        # a refused LRC: the refusal in Chinese, naming the user's file and its line
        _use_lrc(pg, tmp_path / "broken.lrc")
        toast = wait_text(pg, ".toast-body >> nth=-1", r"broken\.lrc：LRC 文件有问题：第 2 行没有时间标签", 30)
        pg.wait_for_timeout(800)  # the toast slides in
        pg.screenshot(path=str(ART / "timing-zh-3-refused.png"))  # the toast is fixed to the window's corner
        assert not english_sentences(toast, KEEP), toast
        title = pg.locator(".toast-title >> nth=-1")  # Gradio writes "Warning" there; the page shows it worded
        assert pg.evaluate("e => getComputedStyle(e, '::before').content", title.element_handle()) == '"警告"'
        assert title.evaluate("e => getComputedStyle(e).fontSize") == "0px"
        assert ws.song("city_lights")["lrc_name"] == "city_lights.lrc"  # the refused file replaced nothing

        # SongPrep's output proposed beside the saved starts; one section accepted, then saved
        pick(pg, "timing-method", "SongPrep 结果")
        pg.locator("#timing-songprep textarea").fill(SONGPREP)
        pg.locator("#btn-timing-propose").click()
        table = wait_text(pg, "#timing-proposal", r"最低置信度")
        assert "已保存" in table and "SongPrep 结果" in table, table
        assert "2 [verse]" in table and "7.50 (1.00)" in table and "准备数据时" in table, table
        # vocal activity on the same song: a proposal or a plain refusal, in Chinese either way
        pick(pg, "timing-method", "人声活动")
        pg.locator("#btn-timing-propose").click()
        wait_text(pg, "#timing-proposal", r"人声活动", 120)
        wait_text(pg, "#timing-proposal", r"分析对象：演示用人声估计|未给出建议", 120)
        _shot(pg, "proposals", "timing-zh-4-proposals.png")

        pick(pg, "timing-accept-pick", "SongPrep 结果")
        pick(pg, "timing-section-pick", "2 [verse]")
        pg.locator("#btn-timing-accept-one").click()
        wait_text(pg, "#timing-status", r"第 2 段已按SongPrep 结果设为 7.50 秒")
        assert pg.locator("#timing-start-2 input").input_value() == "7.5"
        pg.locator("#btn-timing-save").click()
        wait_text(pg, "#timing-status", r"city_lights 的段落起点已保存（来源：手动编辑）")
        assert ws.song("city_lights")["timing"]["sections"][1]["start_s"] == 7.5
        row = pg.locator("#timing-proposal tr", has_text="2 [verse]").inner_text()
        assert row.count("7.50") == 2, row  # the table's saved column follows the save
        _shot(pg, "saved", "timing-zh-5-accepted.png")

        # a Chinese LRC (主歌/副歌, full-width punctuation) gives a song without lyrics its sections and words
        status = _lrc_for(pg, "river", r"歌词还没有段落", tmp_path / "河流.lrc", r"这首歌没有歌词：已从 LRC 中填入")
        assert "3 个段落" in status, status
        assert "[chorus]" in pg.locator("#timing-start-3").inner_text()
        assert ws.song("river")["gt_lyric"].startswith("[intro-short] ; [verse] 啊.河流带我远行")
        _shot(pg, "Chinese LRC", "timing-zh-6-chinese-lrc.png")

        # the Data tab: the same songs' findings (timing fixes, the split of the long song) in Chinese
        open_tab(pg, 1)
        pg.locator("#btn-check").click()
        pick(pg, "song-pick", "north_road")
        findings = wait_text(pg, "#song-findings", r"训练片段", 120)
        assert "按段落边界切成" in findings, findings
        _no_english(pg, "Data tab findings", "#song-findings")
        _no_english(pg, "Data tab table", "#songs-table")
        pg.screenshot(path=str(ART / "timing-zh-7-data.png"), full_page=True)

        # Tokenize: the prepare report's timing findings and the token budget of the split song, in Chinese
        open_tab(pg, 2)
        pg.locator("#btn-tokenize").click()
        wait_text(pg, "#tok-summary", r"已编码数据集", 400)
        pg.wait_for_timeout(1500)
        for sel in ("#tok-summary", "#tok-report", "#tok-budget"):
            _no_english(pg, f"Tokenize {sel}", sel)
        pg.screenshot(path=str(ART / "timing-zh-8-tokenize.png"), full_page=True)

        # Train: the preset note and the estimate (the trainer's own check of these data) in Chinese
        open_tab(pg, 3)
        pg.locator("#optim-acc button").first.click()
        wait_text(pg, "#estimate", r"[\u4e00-\u9fff]", 60)
        pg.wait_for_timeout(2000)
        for sel in ("#preset-note", "#estimate", "#ckpt-table"):
            _no_english(pg, f"Train {sel}", sel)
        pg.screenshot(path=str(ART / "timing-zh-9-train.png"), full_page=True)
