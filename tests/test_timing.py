"""Section timing: LRC parsing, length words, long-song items, crops on boundaries, vocal-activity
proposals and forced alignment (core/timing/lrc.py, core/timing/sections.py, core/timing/vocal_activity.py, core/timing/alignment.py)."""
from __future__ import annotations

import math

import pytest
import torch

from core.text import lyrics as lyr
from core.timing.alignment import LineSpan, refine_timing, section_lines
from core.timing.lrc import parse_lrc, timing_from_lrc
from core.timing.sections import (SongTiming, TimedSection, TimingError, crop_sections, normalize, plan_windows,
                         section_frames, untimed_too_long)
from core.timing.vocal_activity import envelope, propose, propose_from_stem, regions
from tests.datagen import LRC_60

TAGS = lyr.STRUCTURE_TAGS



def _timing(lrc_text=LRC_60, duration=60.0, gt=None):
    t, notes = timing_from_lrc(parse_lrc(lrc_text), duration, gt)
    return normalize(t, TAGS)[0], notes


# --------------------------------------------------------------------------------------------------
# LRC
# --------------------------------------------------------------------------------------------------
def test_parse_lrc_times_tags_multiple_stamps_and_offset():
    text = ("[offset:+500]\n[00:01.5]\n[verse]\n[00:12.30]the city <00:13.00>lights\n"
            "[01:02.00][02:10.5]hold on\n[00:20:50]colon hundredths\n作词：某人\n[00:00.00]作曲 : 某人\n")
    lrc = parse_lrc(text)
    assert lrc.errors == []
    assert lrc.offset_s == 0.5
    got = [(round(ln.time_s, 3), ln.text, ln.tag) for ln in lrc.lines]
    # sorted by time; [verse] on its own line opens a section at the next timed line; offset subtracted
    assert got == [(1.0, "", None), (11.8, "the city lights", "[verse]"), (20.0, "colon hundredths", None),
                   (61.5, "hold on", None), (130.0, "hold on", None)]
    assert any("credit" in n for n in lrc.notes)  # 作曲 line left out, said so


def test_parse_lrc_reports_bad_lines_with_numbers():
    lrc = parse_lrc("[00:01.00][Kazoo Party] hi\nno time here\n[chorus]\n")
    assert any(e.startswith("line 1:") and "Kazoo Party" in e for e in lrc.errors)
    assert any(e.startswith("line 2 ") for e in lrc.errors)
    assert any("line 3" in e and "not followed" in e for e in lrc.errors)
    with pytest.raises(TimingError, match="LRC file has problems"):
        timing_from_lrc(lrc, 60.0)


def test_lrc_with_tags_gives_sections_and_official_lyrics():
    t, _ = _timing()
    assert t.source == "lrc"
    assert [s.tag for s in t.sections] == ["[intro-short]", "[verse]", "[chorus]", "[inst-short]", "[verse]",
                                           "[chorus]", "[outro-short]"]
    assert [s.start_s for s in t.sections] == [0.0, 4.0, 14.0, 24.0, 30.0, 40.0, 52.0]
    text = t.lyrics()
    # the filled gt_lyric is already official: check_lyrics keeps it as it is
    assert lyr.check_lyrics(text).status == "ok"
    assert text.startswith("[intro-short] ; [verse] the city lights are calling.i walk alone tonight. ; [chorus]")


def test_lrc_times_with_the_users_own_lyrics_text():
    gt = ("[intro-short] ; [verse] The city lights are calling.I walk alone tonight. ; [chorus] Hold on.We shine. ; "
          "[inst-short] ; [verse] The river.The night. ; [chorus] Hold on.We shine. ; [outro-short]")
    t, notes = _timing(gt=gt)
    assert t.sections[1].text == "The city lights are calling.I walk alone tonight."
    assert not any("differ" in n for n in notes)


def test_untagged_lrc_is_matched_to_gt_lyric_sections():
    lrc = ("[00:05.00]the city lights are calling\n[00:09.00]i walk alone tonight\n[00:15.00]hold on hold on\n"
           "[00:19.00]we shine until the morning\n[00:23.50]\n[00:31.00]the river runs forever\n[00:36.00]hold on\n")
    gt = ("[intro-short] ; [verse] the city lights are calling.i walk alone tonight. ; "
          "[chorus] hold on hold on.we shine until the morning. ; [inst-short] ; [verse] the river runs forever. ; "
          "[chorus] hold on.")
    t, _ = _timing(lrc, 45.0, gt)
    assert [(s.tag, s.start_s) for s in t.sections] == [
        ("[intro-short]", 0.0), ("[verse]", 5.0), ("[chorus]", 15.0), ("[inst-short]", 23.5),
        ("[verse]", 31.0), ("[chorus]", 36.0)]
    # issue 27: without a time mark the inst is no longer refused; its start is estimated one line
    # length after the last sung line (median step between sung lines: 5 s) and the note says so
    t2, notes = timing_from_lrc(parse_lrc(lrc.replace("[00:23.50]\n", "")), 45.0, gt)
    assert [s.start_s for s in t2.sections] == [0.0, 5.0, 15.0, pytest.approx(24.0), 31.0, 36.0]
    assert any("section 4 [inst-short]: its start was estimated at 0:24.0" in n for n in notes)


def test_untagged_lrc_without_lyrics_becomes_verses_split_at_time_marks():
    lrc = "[00:03.00]line one\n[00:06.00]line two\n[00:12.00]\n[00:20.00]line three\n[00:28.00]\n"
    t, notes = timing_from_lrc(parse_lrc(lrc), 35.0)
    t, changes = normalize(t, TAGS)
    assert [(s.tag, s.start_s) for s in t.sections] == [("[intro-short]", 0.0), ("[verse]", 3.0),
                                                        ("[verse]", 20.0), ("[outro-short]", 28.0)]
    assert any("no section tags" in n for n in notes)
    assert any("added [intro-short]" in c for c in changes)


# --------------------------------------------------------------------------------------------------
# normalize: length words from measured lengths, every change reported
# --------------------------------------------------------------------------------------------------
def test_length_words_follow_measured_length_and_are_reported():
    secs = [TimedSection("[intro-short]", "", 0.0), TimedSection("[verse]", "a.", 22.0),
            TimedSection("[inst-long]", "", 40.0), TimedSection("[chorus]", "b.", 45.0),
            TimedSection("[outro-short]", "", 60.0)]
    t, changes = normalize(SongTiming(secs, 75.0, "edited"), TAGS)
    assert [s.tag for s in t.sections] == ["[intro-long]", "[verse]", "[inst-short]", "[chorus]", "[outro-medium]"]
    assert len(changes) == 3
    assert "section 1 [intro-short] lasts 22.0 s: tagged [intro-long]" in changes


def test_normalize_refuses_unordered_or_late_starts():
    with pytest.raises(TimingError, match="starts must increase"):
        normalize(SongTiming([TimedSection("[verse]", "a.", 0), TimedSection("[chorus]", "b.", 0)], 10.0), TAGS)
    with pytest.raises(TimingError, match="after the end of the song"):
        normalize(SongTiming([TimedSection("[verse]", "a.", 0), TimedSection("[chorus]", "b.", 12)], 10.0), TAGS)


# --------------------------------------------------------------------------------------------------
# long songs -> items at section boundaries
# --------------------------------------------------------------------------------------------------
def test_60s_song_split_for_max_dur_20_items_carry_exactly_their_sections():
    t, _ = _timing()
    wins, warnings = plan_windows(t, max_dur=20.0, min_dur=5.0)
    assert warnings == []
    assert all(w.duration_s <= 20.0 for w in wins)
    # consecutive, cover the song, cut only at section starts
    assert wins[0].start_s == 0.0 and wins[-1].end_s == 60.0
    assert all(a.end_s == b.start_s for a, b in zip(wins, wins[1:]))
    starts = {s.start_s for s in t.sections}
    assert all(w.start_s in starts for w in wins)
    # lyrics: exactly the sections inside each window, nothing else
    for w in wins:
        inside = [s for s, e in zip(t.sections, t.ends()) if s.start_s >= w.start_s and e <= w.end_s]
        assert w.lyrics == lyr.SEP.join(s.official() for s in inside)
    assert [w.reaches_end for w in wins] == [False] * (len(wins) - 1) + [True]
    assert [(w.start_s, w.end_s) for w in wins] == [(0.0, 14.0), (14.0, 30.0), (30.0, 40.0), (40.0, 60.0)]


def test_section_longer_than_max_dur_is_named():
    t = SongTiming([TimedSection("[verse]", "a.", 0.0), TimedSection("[inst-long]", "", 10.0)], 50.0, "lrc")
    with pytest.raises(TimingError, match=r"section 2 \[inst-long\].*longer than the model's max_dur"):
        plan_windows(t, 20.0)


def test_untimed_long_song_message_names_the_ways_to_add_timing():
    msg = untimed_too_long("song.wav", 200.0, 150.0)
    assert "LRC" in msg and ".lrc" in msg and '"lrc"' in msg and "Timing editor" in msg and "propose" in msg


# --------------------------------------------------------------------------------------------------
# memory crops on section boundaries
# --------------------------------------------------------------------------------------------------
def test_crops_start_and_end_on_section_boundaries():
    t, _ = _timing()
    spans = section_frames([s.start_s for s in t.sections], 60 * 25, 25)
    bounds = {a for a, _ in spans} | {spans[-1][1]}
    seen = set()
    for seed in range(40):
        c = crop_sections(spans, 20 * 25, True, seed)
        assert c.start_frame in bounds and c.start_frame + c.num_frames in bounds
        assert c.num_frames <= 500
        assert c.reaches_end == (c.last == len(spans) - 1)
        seen.add((c.first, c.last))
    assert len(seen) > 2   # training sees different parts of the song
    v = crop_sections(spans, 500, True, 0, random_start=False)
    assert (v.first, v.start_frame) == (0, 0)
    with pytest.raises(TimingError, match="shorter than every section"):
        crop_sections(spans, 50, True, 0)


# --------------------------------------------------------------------------------------------------
# vocal-activity proposal
# --------------------------------------------------------------------------------------------------
def _synthetic_vocal(sr=8000):
    """Tones where lines are sung (0.3 s breaths between lines, 0.8 s before a new section), silence elsewhere."""
    dur = 70.0
    sections = [("[intro-short]", None, 0.0), ("[verse]", (6.0, 17.2), 6.0), ("[chorus]", (18.0, 29.5), 18.0),
                ("[inst-short]", None, 29.5), ("[verse]", (38.0, 49.2), 38.0), ("[chorus]", (50.0, 62.0), 50.0),
                ("[outro-short]", None, 62.0)]
    x = torch.zeros(int(dur * sr))
    for k, (tag, span, _) in enumerate(sections):
        if span is None:
            continue
        a, b = span
        t0 = a
        f = 220.0 * (1 + 0.25 * k)
        while t0 < b:
            t1 = min(b, t0 + 2.5)
            n0, n1 = int(t0 * sr), int(t1 * sr)
            tt = torch.arange(n1 - n0) / sr
            x[n0:n1] = 0.3 * torch.sin(2 * math.pi * f * tt)
            t0 = t1 + 0.3
    lyric = [(tag, "some words here." if tag in lyr.VOCAL_TAGS else "") for tag, _, _ in sections]
    return x, sr, lyric, [s for _, _, s in sections], dur


def test_vocal_activity_proposal_recovers_section_starts():
    x, sr, lyric, truth, dur = _synthetic_vocal()
    prop, env, act = propose_from_stem(lyric, x, sr)
    got = [s.start_s for s in prop.timing.sections]
    assert prop.timing.source == "proposed"
    assert all(abs(g - t) <= 0.5 for g, t in zip(got, truth)), (got, truth)
    assert prop.confidence > 0.5
    # adding bleed from an accompaniment (-40 dB noise everywhere) keeps it working
    noisy = x + 0.003 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    prop2, _, _ = propose_from_stem(lyric, noisy, sr)
    assert all(abs(s.start_s - t) <= 0.5 for s, t in zip(prop2.timing.sections, truth))


def test_vocal_activity_proposal_is_unsure_when_it_must_guess():
    x, sr, lyric, truth, dur = _synthetic_vocal()
    env = envelope(x, sr)
    act = regions(env)
    # lyrics that claim an instrumental break the stem does not have inside the first chorus region
    lyric2 = lyric[:2] + [("[inst-short]", ""), ("[chorus]", "x.")] + lyric[2:]
    p = propose(lyric2, act, dur)
    assert p.confidence < 0.5 and any("guess" in n for n in p.notes)
    silent = propose(lyric, regions(envelope(torch.zeros(sr * 10), sr)), 10.0)
    assert silent.confidence == 0.0 and silent.notes


# --------------------------------------------------------------------------------------------------
# aligned lines -> section starts (the aligner itself: tests/test_alignment.py)
# --------------------------------------------------------------------------------------------------
def test_alignment_refines_section_starts_to_first_line():
    t = SongTiming([TimedSection("[intro-short]", "", 0.0), TimedSection("[verse]", "ab.", 0.1, [(0.1, "ab")]),
                    TimedSection("[chorus]", "cd a.", 0.3, [(0.3, "cd a")])], 0.8, "proposed")
    lines, owner = section_lines(t)
    assert lines == ["ab", "cd a"] and owner == [1, 2]
    spans = [LineSpan(0, 0.1, 0.2, 1.0), LineSpan(1, 0.4, 0.58, 1.0)]
    r = refine_timing(t, spans, owner)
    assert [s.start_s for s in r.sections] == [0.0, pytest.approx(0.1), pytest.approx(0.4)]


# --------------------------------------------------------------------------------------------------
# a song's timing and items (core/timing/resolve.py)
# --------------------------------------------------------------------------------------------------
def test_resolve_fills_lyrics_from_lrc_and_splits_items():
    from core.timing.resolve import resolve, song_items
    r = resolve(gt_lyric=None, duration_s=60.0, lrc_text=LRC_60)
    assert r.errors == [] and r.source == "lrc"
    assert r.lyrics == r.timing.lyrics() and r.lyrics.startswith("[intro-short] ; [verse] the city")
    assert r.chorus_start_s == 14.0
    items, warnings, errors = song_items(r, 60.0, 20.0, 5.0, "city.wav")
    assert errors == [] and len(items) == 4
    assert [it.reaches_end for it in items] == [False, False, False, True]
    assert items[1].sections == [{"tag": "[chorus]", "start_s": 0.0}, {"tag": "[inst-short]", "start_s": 10.0}]
    assert items[1].lyrics == "[chorus] hold on hold on.we shine until the morning. ; [inst-short]"


def test_untimed_song_longer_than_max_dur_is_refused_with_the_ways_to_add_timing():
    from core.timing.resolve import resolve, song_items
    r = resolve(gt_lyric="[verse] a.", duration_s=60.0)
    assert r.timing is None and r.source == "none"
    items, _, errors = song_items(r, 60.0, 20.0, 5.0, "long.wav")
    assert items == [] and "long.wav" in errors[0] and "LRC" in errors[0] and "Timing editor" in errors[0]
    items, _, errors = song_items(r, 15.0, 20.0, 5.0, "short.wav")
    assert errors == [] and items[0].reaches_end and items[0].lyrics == "[verse] a."


def test_saved_timing_must_still_match_the_lyrics():
    from core.timing.resolve import resolve
    saved = {"source": "edited", "sections": [{"tag": "[intro-short]", "start_s": 0}, {"tag": "[verse]", "start_s": 12.5}]}
    r = resolve(gt_lyric="[intro-short] ; [verse] new words.", duration_s=30.0, saved=saved)
    assert r.errors == [] and r.source == "edited"
    assert r.lyrics == "[intro-medium] ; [verse] new words."          # 12.5 s intro -> medium, reported
    assert r.changes == ["section 1 [intro-short] lasts 12.5 s: tagged [intro-medium]"]
    r = resolve(gt_lyric="[verse] a. ; [chorus] b.", duration_s=30.0, saved=saved)
    assert r.timing is None and "Timing editor" in r.errors[0]
