"""Section names people write in lyric sheets -> SongGeneration's 13 official structure tags.

Covers English, Chinese (simplified and traditional), Japanese, Korean and Spanish (plus a few
French / Portuguese / German words), with an optional number or letter ("Verse 2", "主歌1",
"Aメロ", "1절") and an optional length word for instrumental parts ("long intro", "长前奏").
A pre-chorus is mapped to [verse]: it is sung, verse-like material (the official tags have no
pre-chorus). A name may carry a "last"/"final" word ("ラスサビ", "Coro final", "最后副歌") or name the
soloing instrument ("ギターソロ", "吉他独奏"): the family's tag. 过门 is an instrumental fill ([inst-*]),
Cメロ / Dメロ are bridges. A name that is not listed maps to nothing; the caller reports it as an error.
"""
from __future__ import annotations

import re
from typing import Iterable, Optional

STRUCTURE_TAGS: tuple[str, ...] = (
    "[verse]", "[chorus]", "[bridge]",
    "[intro-short]", "[intro-medium]", "[intro-long]",
    "[outro-short]", "[outro-medium]", "[outro-long]",
    "[inst-short]", "[inst-medium]", "[inst-long]",
    "[silence]",
)
VOCAL_TAGS = frozenset({"[verse]", "[chorus]", "[bridge]"})

# kind -> names (lower-case). Kinds "intro", "outro", "inst" take a length variant.
_NAMES: dict[str, tuple[str, ...]] = {
    "verse": (
        "verse", "rap", "pre-chorus", "prechorus", "pre chorus", "pre-hook", "prehook", "pre hook",
        "主歌", "导歌", "導歌", "预副歌", "預副歌", "说唱", "說唱", "念白", "主歌部分",
        "aメロ", "bメロ", "ａメロ", "ｂメロ", "ヴァース", "バース", "ラップ", "プレコーラス",
        "벌스", "절", "랩", "프리코러스", "프리 코러스", "프리훅",
        "verso", "estrofa", "precoro", "pre-coro", "pre coro", "couplet", "strophe", "estrofe",
    ),
    "chorus": (
        "chorus", "hook", "refrain", "post-chorus", "postchorus", "post chorus",
        "副歌", "合唱", "高潮", "副歌部分",
        "サビ", "大サビ", "落ちサビ", "コーラス", "フック",
        "코러스", "후렴", "훅", "후렴구",
        "coro", "estribillo", "refrão", "refrao",
    ),
    "bridge": (
        "bridge", "middle 8", "middle eight",
        "桥段", "橋段", "桥", "橋", "过渡", "過渡",
        "cメロ", "ｃメロ", "dメロ", "ｄメロ", "ブリッジ",
        "브릿지", "브리지",
        "puente", "pont", "ponte",
    ),
    "intro": (
        "intro", "introduction", "opening",
        "前奏", "引子", "开头", "開頭", "序曲",
        "イントロ",
        "인트로", "전주",
        "introducción", "introduccion", "introdução", "introducao",
    ),
    "outro": (
        "outro", "ending", "end", "coda", "fade out", "fade-out",
        "尾奏", "尾声", "尾聲", "结尾", "結尾", "后奏", "後奏",
        "アウトロ", "エンディング",
        "아웃트로", "아웃로", "후주", "엔딩",
        "final", "cierre", "salida",
    ),
    "inst": (
        "instrumental", "inst", "interlude", "solo", "break", "breakdown", "drop", "guitar solo",
        "间奏", "間奏", "器乐", "器樂", "独奏", "獨奏", "solo段", "过门", "過門",  # 过门: an instrumental fill
        "ソロ", "간주", "솔로",
        "interludio", "puente instrumental",
    ),
    "silence": ("silence", "静音", "靜音", "无声", "無聲", "沉默", "무음", "silencio"),
}
_LONG = ("long", "长", "長", "largo", "larga", "긴", "ロング")
_MEDIUM = ("medium", "mid", "中等", "mediano", "mediana")
_SHORT = ("short", "短", "corto", "corta", "짧은", "ショート")

_LOOKUP: dict[str, str] = {name: kind for kind, names in _NAMES.items() for name in names}
# Numbers and ordinals around a name: "Verse 2", "主歌1", "主歌一", "第一段主歌", "1절", "2ª estrofa", "Aメロ2".
_NUMBERING = re.compile(r"^(?:第?[0-9一二三四五六七八九十]+[段节節次번]?|[0-9]+[ªº.]?)\s*|"
                        r"\s*(?:[0-9一二三四五六七八九十]+|[ivx]+|x\s*[0-9]+|[0-9]+\s*x|#\s*[0-9]+)$", re.I)


def length_variant(label: str) -> str:
    low = label.lower()
    if any(w in low for w in _LONG):
        return "long"
    if any(w in low for w in _MEDIUM):
        return "medium"
    return "short"


def _strip_length_words(name: str) -> str:
    for w in _LONG + _MEDIUM + _SHORT:
        name = re.sub(rf"(?:^|(?<=\s)){re.escape(w)}(?:$|(?=\s))", " ", name) if w.isascii() else name.replace(w, " ")
    return re.sub(r"\s+", " ", name).strip(" -_:")


# Words that place a section ("ラスサビ" = last chorus, "Coro final", "最后副歌") without changing its kind,
# and endings that name a solo of some instrument ("ギターソロ", "吉他独奏", "기타 솔로").
_PLACE_BEFORE = ("ラスト", "ラス", "大", "落ち", "頭", "最後の", "最后", "最後", "last", "final", "último", "ultimo",
                 "última", "ultima", "마지막")
_PLACE_AFTER = ("final", "finale", "finales")
_SOLO_ENDINGS = ("ソロ", "独奏", "獨奏", "솔로")  # "guitar solo" is read word by word (and never from a bare line)


def _kind_of_modified(name: str) -> Optional[str]:
    """The kind of a known name with a placing word before/after it, or of an instrument's solo."""
    for pre in _PLACE_BEFORE:
        rest = name[len(pre):].strip(" -_:.の")
        if name.startswith(pre) and rest and rest in _LOOKUP:
            return _LOOKUP[rest]
    for post in _PLACE_AFTER:
        rest = name[:-len(post)].strip(" -_:.")
        if name.endswith(post) and rest and rest in _LOOKUP:
            return _LOOKUP[rest]
    if any(name.endswith(e) and 0 < len(name) - len(e) <= 12 for e in _SOLO_ENDINGS):
        return "inst"
    return None


def _kind_of(name: str) -> Optional[str]:
    """The kind of a bare name, after removing numbering and length words; None when unknown."""
    name = re.sub(r"\s+", " ", name.lower()).strip(" -_:.")
    for _ in range(3):  # "第一段主歌2" needs the prefix and the suffix removed
        if name in _LOOKUP:
            return _LOOKUP[name]
        stripped = _NUMBERING.sub("", name).strip(" -_:.")
        if stripped == name:
            break
        name = stripped
    if name in _LOOKUP:
        return _LOOKUP[name]
    kind = _kind_of_modified(name)
    if kind:
        return kind
    bare = _strip_length_words(name)
    if bare != name and bare:
        return _kind_of(bare)
    return None


# Multi-word English labels ("Final Chorus", "Instrumental Break", "Rap Verse"): the first matching
# group in this order decides (a pre-chorus is a verse; "Outro Chorus" is sung, so a chorus).
_WORD_ORDER = (("verse", {"pre", "prechorus", "pre-chorus", "prehook", "pre-hook"}),
               ("chorus", {"chorus", "hook", "refrain", "postchorus", "post-chorus"}),
               ("verse", {"verse", "rap"}),
               ("bridge", {"bridge", "middle"}),
               ("intro", {"intro", "introduction"}),
               ("outro", {"outro", "ending", "end", "coda"}),
               ("inst", {"instrumental", "inst", "interlude", "solo", "break", "breakdown", "drop"}),
               ("silence", {"silence"}))


def _kind_by_words(low: str) -> Optional[str]:
    words = set(re.split(r"[\s_]+", re.sub(r"[^a-z\- _]+", " ", low)))
    words |= {p for w in list(words) for p in w.split("-")}
    for kind, names in _WORD_ORDER:
        if words & names:
            return kind
    return None


def map_section_label(label: str, tags: Iterable[str] = STRUCTURE_TAGS, loose: bool = True) -> Optional[str]:
    """A section header ("Verse 1", "Pre-Chorus", "副歌", "サビ", "Estribillo", "Long Intro") -> official tag or None.

    `loose` also reads labels with extra words ("Verse 1: Jay-Z", "Final Chorus"); a bare lyric line
    is checked without it, so "we break the end" is never taken for a header."""
    tags = tuple(tags)
    raw = label.strip().strip("[]()").strip()
    low = raw.lower()
    if f"[{low}]" in tags:
        return f"[{low}]"
    kind = _kind_of(low)
    if kind is None and loose:
        # "Verse 1: Artist", "Chorus (x2)", "主歌 A": try the first word / the part before ':' or '('.
        head = re.split(r"[:(（/|]", low, maxsplit=1)[0].strip()
        kind = _kind_of(head) if head and head != low else None
    if kind is None and loose:
        kind = _kind_by_words(low)
    if kind is None:
        return None
    if kind in ("intro", "outro", "inst"):
        tag = f"[{kind}-{length_variant(low)}]"
    else:
        tag = f"[{kind}]"
    return tag if tag in tags else None


# Names that are also ordinary lyric words: a line holding only one of them is a header only when it
# is decorated ("[Solo]", "Solo:", "(Solo)") or numbered ("Break 2").
_PLAIN_WORDS = frozenset({"end", "final", "break", "drop", "solo", "silence", "opening", "ending", "inst", "rap",
                          "hook", "coda", "breakdown", "fade out", "fade-out", "cierre", "salida", "pont", "ponte",
                          "桥", "橋", "절", "랩", "훅", "솔로", "silencio", "coro"})


def is_bare_header(line: str) -> bool:
    """True when an undecorated line is only a section name ("Chorus", "副歌2", "Verse 1", "サビ")."""
    text = line.strip()
    if not text or len(text) > 30 or map_section_label(text, loose=False) is None:
        return False
    return text.lower() not in _PLAIN_WORDS
