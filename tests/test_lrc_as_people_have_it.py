"""LRC files as people have them (issue 27): plain (untagged) LRCs matched to the lyric sheet by text,
full-width punctuation, partly tagged files, starts pre-filled from what is known, no lyric dropped."""
from __future__ import annotations

import pytest

from core.text import lyrics as lyr
from core.timing.lrc import parse_lrc, timing_from_lrc
from core.timing.sections import TimingError, normalize

SHEET = ("[intro-short] ; [verse] the city lights are calling.i walk alone tonight. ; "
         "[chorus] hold on hold on.we shine until the morning. ; [inst-short] ; "
         "[verse] the river runs forever.it carries me away. ; [chorus] hold on hold on.we shine until the morning. ; "
         "[outro-short]")
PLAIN = ("[ti:Lights]\n[00:08.00]The city lights are calling,\n[00:12.00]I walk alone tonight\n"
         "[00:18.00]Hold on, hold on\n[00:22.00]We shine until the morning\n"
         "[00:40.00]The river runs forever\n[00:44.00]It carries me away\n"
         "[00:50.00]Hold on, hold on\n[00:54.00]We shine until the morning\n")


def _starts(lrc_text, gt=SHEET, duration=70.0, partial=False):
    t, notes = timing_from_lrc(parse_lrc(lrc_text), duration, gt, partial=partial)
    return t, notes


def test_plain_lrc_keeps_every_lyric_line_and_every_section():
    t, notes = _starts(PLAIN)
    t, _ = normalize(t, lyr.STRUCTURE_TAGS)
    assert [s.tag.split("-")[0].rstrip("]") for s in t.sections] == [
        "[intro", "[verse", "[chorus", "[inst", "[verse", "[chorus", "[outro"]
    assert [s.start_s for s in t.sections][:3] == [0.0, 8.0, 18.0]
    assert [s.start_s for s in t.sections][4:6] == [40.0, 50.0]
    # every sung section keeps the sheet's words
    assert [s.text for s in t.sections if s.vocal] == [b for tg, b in lyr.check_lyrics(SHEET).sections
                                                       if tg in lyr.VOCAL_TAGS]
    assert sum("estimated" in n for n in notes) == 2   # the inst and the outro have no time in the file


def test_a_single_inst_tag_no_longer_cuts_the_song():
    # what the newcomer did after the refusal: one tagged time mark for the break
    t, notes = _starts(PLAIN.replace("[00:40.00]", "[00:30.00][inst-short]\n[00:40.00]"))
    assert [s.start_s for s in t.sections] == [0.0, 8.0, 18.0, 30.0, 40.0, 50.0, pytest.approx(58.0)]
    assert len([s for s in t.sections if s.vocal]) == 4
    assert any("differ from the lyrics' sections" in n for n in notes)


def test_full_width_punctuation_spacing_and_case_are_ignored():
    sheet = "[verse] 啊，河流带我远行，我在岸边等你 ; [chorus] 天很蓝，风很轻"
    lrc = "[00:05.00]啊，河流带我远行，\n[00:09.50]我在 岸边等你\n[00:20.00]天很蓝, 风很轻。\n"
    t, _ = _starts(lrc, sheet, 30.0)
    assert [(s.tag, s.start_s) for s in t.sections] == [("[verse]", 5.0), ("[chorus]", 20.0)]
    assert t.sections[0].text == lyr.check_lyrics(sheet).sections[0][1]


def test_starts_prefilled_from_what_is_known():
    lrc = PLAIN.replace("[00:40.00]The river runs forever\n[00:44.00]It carries me away\n", "")
    with pytest.raises(TimingError, match=r"section\(s\) 5 \[verse\]"):
        _starts(lrc)
    t, notes = _starts(lrc, partial=True)
    assert [s.start_s for s in t.sections][:3] == [0.0, 8.0, 18.0] and t.sections[4].start_s is None
    assert t.sections[5].start_s == 50.0
    assert any("set their starts" in n for n in notes)


def test_tagged_lrc_with_text_under_an_instrumental_tag_is_refused_not_dropped():
    lrc = "[00:01.00][verse]first line\n[00:10.00][inst-short]\n[00:12.00]a sung line here\n"
    with pytest.raises(TimingError, match="sung lines under the instrumental section"):
        timing_from_lrc(parse_lrc(lrc), 30.0)
