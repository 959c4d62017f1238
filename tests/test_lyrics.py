"""core.text.lyrics: the official grammar is accepted as is; common user formats are fixed (before/after)."""
from __future__ import annotations

import json

import pytest

from core.text import description as desc_mod
from core.text import lyrics as lyr
from tests.datagen import LYRICS_EXAMPLES, SHARED


def _examples():
    return [json.loads(l) for l in LYRICS_EXAMPLES.read_text(encoding="utf-8").splitlines() if l.strip()]


@pytest.mark.parametrize("ex", _examples(), ids=lambda e: e["idx"])
def test_official_examples_accepted_as_is(ex):
    r = lyr.check_lyrics(ex["gt_lyric"])
    assert r.status in ("ok", "warning"), (r.errors, r.changes)
    assert r.text == ex["gt_lyric"]  # byte for byte (upstream's "  " -> " " happens in the model's text rules)
    assert not r.changes and not r.errors
    if ex.get("descriptions"):
        d = desc_mod.check_description(ex["descriptions"])
        assert d.text == ex["descriptions"]  # already lower-case official form: unchanged
        # only phrases outside the vocabularies are flagged, as warnings
        assert set(d.unknown) <= {"piano and drums", "the bpm is 125."}


def test_structure_tags_match_runtime_vocab():
    vocab = SHARED / "fixtures" / "songgen-tiny-v2" / "conf" / "vocab.yaml"
    assert lyr.load_structure_tags(vocab) == lyr.STRUCTURE_TAGS
    groups = lyr.valid_structure_tags()
    assert groups["vocal"] == ["[verse]", "[chorus]", "[bridge]"] and len(groups["instrumental"]) == 10


FIXES = [
    ("[Verse 1]\nHello world, how are you?\nI'm fine!\n\n[Chorus]\nLa la la\nSing along\n\n[Outro]",
     "[verse] Hello world how are you.I'm fine. ; [chorus] La la la.Sing along. ; [outro-short]"),
    ("[Intro]\n[Verse]\n花朵绽放如诗篇，随风轻舞动。\n湖面波光映倒影\n\n[Chorus]\n唱啊唱！\n[Outro]",
     "[intro-short] ; [verse] 花朵绽放如诗篇.随风轻舞动.湖面波光映倒影 ; [chorus] 唱啊唱 ; [outro-short]"),
    ("[Pre-Chorus]\nalmost there\n[Hook]\nbaby baby\n[Instrumental]\n[Bridge]\nwe go\n[Long Outro]",
     "[verse] almost there. ; [chorus] baby baby. ; [inst-short] ; [bridge] we go. ; [outro-long]"),
    ("line one\nline two\n\nline three",
     "[verse] line one.line two. ; [verse] line three."),
    ("Verse 1:\nhello there\nChorus:\nyeah yeah\n(ooh yeah)\n(Chorus)",
     "[verse] hello there. ; [chorus] yeah yeah.ooh yeah. ; [chorus] yeah yeah.ooh yeah."),
    # official sections keep their bytes; only the separator is fixed ("  " is upstream's to normalise)
    ("[verse] hello.world;[chorus] hey  you", "[verse] hello.world ; [chorus] hey  you"),
    ("【Verse】\n“Stray” symbols ★ here… ok\n[INTRO-LONG] some humming", None),
]


@pytest.mark.parametrize("before,after", FIXES)
def test_user_formats_are_fixed(before, after):
    r = lyr.check_lyrics(before)
    assert r.status == "fixed", (r.errors, r.text)
    assert r.changes, "every fix is explained"
    if after is not None:
        assert r.text == after
    again = lyr.check_lyrics(r.text)
    assert again.status in ("ok", "warning") and again.text == r.text  # fixed text is official


def test_stray_symbols_and_instrumental_text():
    r = lyr.check_lyrics("【Verse】\n“Stray” symbols ★ here… ok\n[INTRO-LONG] some humming")
    assert r.text == "[verse] Stray symbols here.ok. ; [intro-long]"
    assert any("instrumental" in c for c in r.changes)


def test_errors_and_warnings():
    r = lyr.check_lyrics("[Spoken Word]\nhello")
    assert r.status == "error" and "unknown section tag [Spoken Word]" in r.errors[0]
    assert lyr.check_lyrics("").status == "error"
    assert lyr.check_lyrics(None).status == "error"
    inst = lyr.check_lyrics("[intro-short] ; [inst-long] ; [outro-short]")
    assert inst.status == "warning" and inst.instrumental_only and "instrumental" in inst.warnings[0]
    strict = lyr.check_lyrics("[Verse] hi", fix=False)
    assert strict.status == "error"


def test_descriptions():
    d = desc_mod.check_description("[Musicality-very-high], Female, Pop, strings (violin, cello), Sadd")
    assert d.text == "[Musicality-very-high], female, pop, strings (violin, cello), sadd"  # v2 tags kept
    assert d.musicality == ["[Musicality-very-high]"]
    assert d.unknown == ["sadd"] and "did you mean: sad" in d.warnings[0]
    assert d.categories["female"] == "gender" and d.categories["strings (violin, cello)"] == "instrument"
    assert desc_mod.check_description("[Pure-Music]").text == "[Pure-Music]"
    assert desc_mod.check_description("  ").text is None
    assert desc_mod.check_description("male, rock").status == "ok"


def test_vocabularies_and_suggestions():
    tags = desc_mod.list_tags()
    for cat in desc_mod.DESCRIPTION_CATEGORIES:
        official = [l.strip().lower() for l in (SHARED / "data" / "description" / f"{cat}.txt")
                    .read_text(encoding="utf-8").splitlines() if l.strip()]
        assert tags[cat] == list(dict.fromkeys(official))
        assert (desc_mod.ASSETS_DIR / f"{cat}.txt").read_bytes() == (SHARED / "data" / "description" / f"{cat}.txt").read_bytes()
    assert tags["gender"] == ["male", "female", "mixed"]
    assert desc_mod.suggest_tags("pian")[0] == "piano"
    assert "pop" in desc_mod.suggest_tags("po", category="genre")
    assert desc_mod.format_description(["Female", " Pop "]) == "female, pop"


# A full-length song in the official form (sections joined by " ; ", sentences by "."), written for this test.
FULL_LENGTH = (
    "[intro-medium] ; [verse] 清晨的风吹过旧窗台.阳光洒在褪色的书页上.我翻开那年写下的心愿.字迹模糊却依然温暖."
    "街角的咖啡店换了招牌.老板的笑容还是一样.我们曾在这里谈论未来.说要一起去看海的远方 ; "
    "[chorus] 让我再唱一遍这首歌.唱给所有走散的人听.时间带走了年少的轻狂.却带不走心里的光.如果明天风雨再来.我会记得你说的坚强."
    "让我再唱一遍这首歌.直到黑夜变成黎明 ; [inst-medium] ; "
    "[verse] 火车穿过无边的麦田.车窗映着我疲惫的脸.城市的灯火一盏盏亮起.每一盏都藏着一段思念.我学会了一个人吃饭."
    "学会了在人群里沉默.可每当听见熟悉的旋律.眼泪还是悄悄滑落 ; "
    "[chorus] 让我再唱一遍这首歌.唱给所有走散的人听.时间带走了年少的轻狂.却带不走心里的光.如果明天风雨再来.我会记得你说的坚强."
    "让我再唱一遍这首歌.直到黑夜变成黎明 ; "
    "[bridge] 也许路还很长.也许梦会受伤.但我依然相信.有人在远方守望.把所有的遗憾.都写进这段时光 ; "
    "[chorus] 让我再唱一遍这首歌.唱给所有走散的人听.时间带走了年少的轻狂.却带不走心里的光.如果明天风雨再来.我会记得你说的坚强."
    "让我再唱一遍这首歌.直到黑夜变成黎明 ; [outro-medium]")


def test_the_demo_counts_lyrics_as_songgeneration_does(tmp_path):
    """The demo model's lyric budget is counted with SongGeneration's own Qwen2 tokenizer (bundled), so it
    accepts exactly what an official checkpoint accepts: the official examples and a full-length song."""
    from core.config import load_config
    from core.data import model_limits
    from core.model.text import lyric_tokenizer
    from core.text.fields import lyric_token_problem

    limits = model_limits(load_config(None, {"workspace": str(tmp_path)}))
    assert limits.is_demo and limits.lyric_max_len == 600
    official = lyric_tokenizer(SHARED / "fixtures" / "songgen-tiny-v2" / "third_party" / "Qwen2-7B", 600,
                               limits.structure_tags, "v2")
    texts = [ex["gt_lyric"] for ex in _examples()] + [FULL_LENGTH]
    for text in texts:
        n = limits.lyric_tokens(text)
        assert n == len(official.token_ids(text)) <= 600                 # the official count, within budget
        assert lyric_token_problem(text, limits.lyric_max_len, limits.lyric_tokens, "song") is None
    assert limits.lyric_tokens(FULL_LENGTH) > 300
    too_long = " ; ".join([FULL_LENGTH] * 3)                               # over 600 for the official model too
    assert len(official.token_ids(too_long)) > 600
    assert "over the model's budget of 600" in lyric_token_problem(too_long, 600, limits.lyric_tokens, "song")
