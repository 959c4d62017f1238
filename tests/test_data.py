"""core.data: bad inputs each get their own reason, good songs are prepared, nothing the user gave
is modified, the cache skips unchanged songs and re-tokenizes only edited ones."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core import data
from core.cli import main as cli_main
from core.codec.demo import DemoCodec
from core.config import load_config
from tests.datagen import GOOD_LYRICS, SHARED, build_bad_corpus, tree_hashes, write_song


class CountingCodec:
    """Wraps a codec and records every encode call (to prove cache hits encode nothing)."""

    def __init__(self, inner=None, fail_on: str | None = None, interrupt_after: int | None = None):
        self.inner = inner or DemoCodec()
        self.id, self.version = self.inner.id, self.inner.version
        self.frame_rate, self.sample_rate, self.is_demo = self.inner.frame_rate, self.inner.sample_rate, self.inner.is_demo
        self.calls: list[dict] = []
        self.interrupt_after = interrupt_after

    def encode(self, mix, vocal=None, bgm=None):
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise Interrupted()
        self.calls.append({"n": mix.shape[-1], "stems": vocal is not None and bgm is not None})
        return self.inner.encode(mix, vocal, bgm)

    def decode(self, tokens, prompt=None):
        return self.inner.decode(tokens, prompt)


class Interrupted(BaseException):
    """Stands in for Ctrl-C / a killed process in the middle of a run."""


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """One workspace per module: the demo model is built there once."""
    return tmp_path_factory.mktemp("workspace")


def cfg_for(ws: Path, prepared: Path, **over):
    return load_config(None, {"workspace": str(ws), "paths.prepared_data_dir": str(prepared), **over})


# ---------------------------------------------------------------- bad-input corpus
@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ws):
    root = tmp_path_factory.mktemp("corpus")
    c = build_bad_corpus(root / "user")
    before = tree_hashes(root / "user")
    codec = CountingCodec()
    cfg = cfg_for(ws, root / "prepared", **{"paths.metadata_path": str(c["metadata"])})
    ticks = []
    result = data.prepare(cfg, codec=codec, progress=lambda d, t, m: ticks.append((d, t, m)))
    return {"root": root, "cfg": cfg, "result": result, "codec": codec, "before": before, "ticks": ticks, **c}


def test_each_bad_song_has_its_own_reason(corpus):
    by_idx = {}
    for e in corpus["result"].report:
        by_idx.setdefault(e["idx"], []).append(e)
    for idx, want in corpus["expect"].items():
        entry = by_idx[idx][0]
        status, fragment = (want, None) if isinstance(want, str) else want
        assert entry["status"] == status, (idx, entry)
        assert entry["reasons"] or status == "ok", idx
        if fragment:
            assert any(fragment in r for r in entry["reasons"]), (idx, entry["reasons"])
    dup = by_idx["good1"][1]
    assert dup["status"] == "rejected" and "duplicate idx 'good1'" in dup["reasons"][0]
    assert any("mono" in r for r in by_idx["monolow"][0]["reasons"])
    assert any("zorblax-core" in r for r in by_idx["tags"][0]["reasons"])  # unknown description tag reported
    assert len(corpus["result"].report) == 14  # one entry per input line, the broken one included


def test_report_json_and_summary(corpus):
    res = corpus["result"]
    doc = json.loads(res.report_path.read_text(encoding="utf-8"))
    assert res.report_path == res.dataset_dir / "report.json"
    assert [e["idx"] for e in doc["songs"]] == [e["idx"] for e in res.report]
    for e in doc["songs"]:
        assert {"idx", "source", "status", "reasons"} <= set(e)
        assert e["status"] in ("ok", "fixed", "warning", "rejected")
    fixme = next(e for e in doc["songs"] if e["idx"] == "fixme")
    assert fixme["lyrics_fixed"] == "[verse] Hello world how are you. ; [chorus] La la la. ; [outro-short]"
    assert fixme["lyrics_original"].startswith("[Verse 1]")
    s = res.summary
    assert (s["prepared"], s["rejected"], s["ok"], s["fixed"], s["warning"]) == (5, 9, 2, 2, 1)
    assert s["codec_is_demo"] and "DEMO split" in s["separation"]
    assert all("DEMO split" in e["separation"] for e in doc["songs"] if e["status"] != "rejected")
    assert corpus["ticks"][-1][0] == corpus["ticks"][-1][1] == 14


def test_user_files_unmodified(corpus):
    assert tree_hashes(corpus["root"] / "user") == corpus["before"]


def test_dataset_rows(corpus):
    res = corpus["result"]
    ds = data.load_prepared(res.dataset_dir)
    assert set(ds) == {"train", "validation"}
    assert len(ds["train"]) + len(ds["validation"]) == 5 and len(ds["train"]) >= 1
    assert ds["train"].features["codes"].feature.feature.dtype == "int16"  # stored compactly
    rows = {r["idx"]: r for split in ds.values() for r in split}
    r = rows["good1"]
    assert r["codes"].dtype == torch.int64 and r["codes"].shape == (3, 301) and r["num_frames"] == 301
    assert r["prompt"].dtype == torch.int64 and r["prompt"].shape == (3, 250)
    assert abs(r["duration_s"] - 12.0) < 1e-3
    assert r["lyrics"] == GOOD_LYRICS and r["description"] == "female, pop, sad, piano"
    assert rows["good2"]["description"] is None
    # the v2 musicality tag is kept (issue 14), the style tags lower-cased
    assert rows["good3"]["description"] == "[Musicality-very-high], male, rock, energetic"
    assert rows["fixme"]["lyrics"].startswith("[verse] Hello world")
    # 12 s song, offset 30 s: the prompt is clamped to the song's last 10 s
    assert torch.equal(r["prompt"], r["codes"][:, 50:300])
    manifest = [json.loads(l) for l in (res.dataset_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {m["idx"] for m in manifest} == set(rows)
    assert all({"path", "gt_lyric", "descriptions", "idx"} <= set(m) for m in manifest)


def test_rerun_encodes_nothing(corpus):
    codec = CountingCodec()
    res = data.prepare(corpus["cfg"], codec=codec)
    assert codec.calls == [] and res.summary["encoded"] == 0 and res.summary["cached"] == 5
    assert res.dataset_dir == corpus["result"].dataset_dir
    assert [e["status"] for e in res.report] == [e["status"] for e in corpus["result"].report]


def test_cli_exit_codes_and_summary(corpus, tmp_path, capsys):
    cfg_path = corpus["cfg"].save(tmp_path / "cfg.yaml")
    assert cli_main(["prepare", "--config", str(cfg_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "rejected: 9" in out and "prepared: 5" in out and "DEMO codec" in out and "from cache 5" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"idx": "x", "path": "nope.wav", "gt_lyric": "[verse] a"}\n', encoding="utf-8")
    rc = cli_main(["prepare", "--config", str(cfg_path), "--set", f"paths.metadata_path={bad}", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 1 and "no song could be prepared" in captured.err and "not found" in captured.out
    assert cli_main(["prepare", "--config", str(cfg_path), "--set", "paths.metadata_path=/no/such.jsonl"]) == 2


# ---------------------------------------------------------------- cache behaviour
@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    root = tmp_path_factory.mktemp("songs")
    return [write_song(root / f"s{i}.wav", 12, seed=10 + i) for i in range(3)]


def _items(songs, lyrics=None):
    return [{"idx": p.stem, "audio": str(p), "lyrics": (lyrics or {}).get(p.stem, GOOD_LYRICS),
             "description": "pop"} for p in songs]


def test_edit_one_song_retokenizes_only_it(songs, tmp_path, ws):
    cfg = cfg_for(ws, tmp_path / "ws")
    c1 = CountingCodec()
    r1 = data.prepare(cfg, items=_items(songs), codec=c1)
    assert len(c1.calls) == 3
    c2 = CountingCodec()
    r2 = data.prepare(cfg, items=_items(songs, {"s1": "[verse] a new line ; [chorus] new chorus"}), codec=c2)
    assert len(c2.calls) == 1 and r2.summary["cached"] == 2
    assert r2.dataset_dir != r1.dataset_dir and (r1.dataset_dir / "dataset_dict.json").is_file()
    rows = {r["idx"]: r for split in data.load_prepared(r2.dataset_dir).values() for r in split}
    assert rows["s1"]["lyrics"] == "[verse] a new line ; [chorus] new chorus"
    # new audio bytes for one song: only that song is encoded again
    edited = tmp_path / "s2.wav"
    write_song(edited, 13, seed=99)
    c3 = CountingCodec()
    items = _items(songs, {"s1": "[verse] a new line ; [chorus] new chorus"})
    items[2]["audio"] = str(edited)
    data.prepare(cfg, items=items, codec=c3)
    assert len(c3.calls) == 1 and c3.calls[0]["n"] == 13 * 48000


def test_plan_says_what_would_be_encoded(songs, tmp_path, ws):
    cfg = cfg_for(ws, tmp_path / "ws")
    p0 = data.plan(cfg, items=_items(songs))
    assert p0["to_encode"] == ["s0", "s1", "s2"] and p0["cached"] == [] and p0["rejected"] == []
    data.prepare(cfg, items=_items(songs[:2]), codec=CountingCodec())
    p1 = data.plan(cfg, items=_items(songs))
    assert p1["cached"] == ["s0", "s1"] and p1["to_encode"] == ["s2"]


def test_interrupted_run_resumes(songs, tmp_path, ws):
    cfg = cfg_for(ws, tmp_path / "ws")
    with pytest.raises(Interrupted):
        data.prepare(cfg, items=_items(songs), codec=CountingCodec(interrupt_after=2))
    c = CountingCodec()
    res = data.prepare(cfg, items=_items(songs), codec=c)
    assert len(c.calls) == 1 and res.summary["cached"] == 2 and res.summary["prepared"] == 3


def test_codec_failure_rejects_one_song_only(songs, tmp_path, ws):
    class Flaky(CountingCodec):
        def encode(self, mix, vocal=None, bgm=None):
            if mix.shape[-1] == 12 * 48000 and len(self.calls) == 1:
                self.calls.append({"n": -1, "stems": False})
                raise RuntimeError("out of memory (simulated)")
            return super().encode(mix, vocal, bgm)
    res = data.prepare(cfg_for(ws, tmp_path / "ws"), items=_items(songs), codec=Flaky())
    assert [e["status"] for e in res.report] == ["ok", "rejected", "ok"]
    assert "out of memory (simulated)" in res.report[1]["reasons"][0]


# ---------------------------------------------------------------- inputs, stems, separation
def test_folder_import_with_stems_desc_and_non_utf8(tmp_path, ws):
    user = tmp_path / "user"
    write_song(user / "a.wav", 12, seed=1)
    (user / "a.txt").write_text("[Verse]\nhello there\n[Chorus]\nsing it", encoding="utf-8")
    (user / "a.desc.txt").write_text("Female, Pop", encoding="utf-8")
    write_song(user / "b.flac", 12, seed=2)
    (user / "b.txt").write_text(GOOD_LYRICS, encoding="utf-8")
    write_song(user / "b.vocal.wav", 12, seed=3)
    write_song(user / "b.bgm.wav", 12, seed=4)
    write_song(user / "c.wav", 12, seed=5)
    (user / "c.txt").write_bytes("[verse] caf\u00e9 cr\u00e8me br\u00fbl\u00e9e".encode("latin-1"))
    write_song(user / "d.wav", 12, seed=6)  # no lyrics file
    before = tree_hashes(user)
    codec = CountingCodec()
    res = data.prepare(cfg_for(ws, tmp_path / "ws", **{"paths.raw_data_dir": str(user)}), codec=codec)
    st = {e["idx"]: e for e in res.report}
    assert set(st) == {"a", "b", "c", "d"}  # stems are not songs of their own
    assert st["a"]["status"] == "fixed" and st["a"]["description"] == "female, pop"
    assert st["b"]["status"] == "ok" and st["b"]["separation"] == "given stems"
    assert st["c"]["status"] == "rejected" and "not UTF-8" in st["c"]["reasons"][0]
    assert st["d"]["status"] == "rejected" and "d.txt" in st["d"]["reasons"][0]
    assert sorted(c["stems"] for c in codec.calls) == [True, True]
    assert tree_hashes(user) == before


def test_official_codec_without_demucs_says_what_is_missing(songs, tmp_path, ws):
    class NotDemo(CountingCodec):
        pass
    codec = NotDemo()
    codec.is_demo, codec.id = False, "songgen-official-1"
    items = _items(songs[:2])
    items[1]["vocal"], items[1]["bgm"] = str(songs[2]), str(songs[0])
    res = data.prepare(cfg_for(ws, tmp_path / "ws"), items=items, codec=codec)
    assert res.report[0]["status"] == "rejected"
    reason = res.report[0]["reasons"][0]
    assert "htdemucs.pth" in reason and "paths.runtime_path" in reason and "third_party/demucs/ckpt" in reason
    assert res.report[1]["status"] == "ok" and res.report[1]["separation"] == "given stems"  # stems skip separation
    none = data.prepare(cfg_for(ws, tmp_path / "ws2", **{"data.separation": "none"}), items=_items(songs[:1]),
                        codec=CountingCodec())
    assert none.report[0]["status"] == "rejected" and "'none'" in none.report[0]["reasons"][0]


def test_prompt_region_and_split(songs, tmp_path, ws):
    items = _items(songs)
    items[0]["chorus_start_s"] = 1.0
    items[1]["prompt_start_s"] = 0.0
    cfg = cfg_for(ws, tmp_path / "ws", **{"data.prompt_offset_s": 2.0, "data.val_fraction": 0.5})
    res = data.prepare(cfg, items=items, codec=CountingCodec())
    assert [e["prompt_start_s"] for e in res.report] == [1.0, 0.0, 2.0]
    rows = {r["idx"]: r for split in data.load_prepared(res.dataset_dir).values() for r in split}
    assert torch.equal(rows["s0"]["prompt"], rows["s0"]["codes"][:, 25:275])
    assert res.summary["train"] == 2 and res.summary["validation"] == 1
    # the split is a deterministic function of idx and seed, never empties train
    assert data.split_items(["a"], 0.5, 0) == set()
    assert len(data.split_items(["a", "b"], 0.1, 0)) == 1 and len(data.split_items(list("abcde"), 0.1, 0)) == 1
    assert data.split_items(["a", "b"], 0.0, 0) == set()
    ten = [f"s{i}" for i in range(10)]
    assert data.split_items(ten, 0.2, 0) == data.split_items(list(reversed(ten)), 0.2, 0)
    assert len(data.split_items(ten, 0.2, 0)) == 2 and len(data.split_items(ten, 0.99, 0)) == 9


def test_model_limits_from_official_config(ws):
    cfg = load_config(None, {"paths.base_model_path": str(SHARED / "fixtures/songgen-tiny-v2/ckpt/songgen_tiny_v2")})
    lim = data.model_limits(cfg)
    assert (lim.max_dur, lim.prompt_len, lim.frame_rate, lim.prompt_frames) == (2.0, 2.0, 4, 8)
    assert lim.structure_tags[:3] == ("[verse]", "[chorus]", "[bridge]")
    with pytest.raises(data.DataError, match="4 Hz"):
        data.prepare(cfg, items=[], codec=CountingCodec())
    demo = data.model_limits(load_config(None, {"workspace": str(ws)}))
    assert (demo.max_dur, demo.prompt_frames, demo.frame_rate) == (150.0, 250, 25)


def test_auto_separation_picks_demucs_when_found(tmp_path, ws, monkeypatch):
    """Fast path check with a stand-in Separator: the plan, the call and the report (the real model: below)."""
    separation = pytest.importorskip("core.audio.separation")
    calls = []

    class FakeSeparator:
        @classmethod
        def from_checkpoint(cls, pth, yaml_path=None, kwargs=None, device="cpu", seed=0):
            calls.append(("load", Path(pth).name, device, seed))
            return cls()

        def separate(self, mix, sample_rate, bgm_mode="stems"):
            calls.append(("separate", tuple(mix.shape), sample_rate, bgm_mode))
            return mix * 0.5, mix * 0.5
    monkeypatch.setattr(separation, "Separator", FakeSeparator)
    runtime = tmp_path / "runtime"
    (runtime / "third_party/demucs/ckpt").mkdir(parents=True)
    (runtime / "third_party/demucs/ckpt/htdemucs.pth").write_bytes(b"weights")
    short = write_song(tmp_path / "short.wav", 6, seed=7)
    cfg = cfg_for(ws, tmp_path / "prep", **{"paths.runtime_path": str(runtime), "data.bgm_mode": "mix_minus_vocal",
                                           "data.device": "cpu", "data.seed": 3})
    res = data.prepare(cfg, items=[{"audio": str(short), "lyrics": GOOD_LYRICS}], codec=CountingCodec())
    assert res.report[0]["status"] == "warning" and res.report[0]["separation"].startswith("Demucs htdemucs")
    assert "shorter than the model's 10 s prompt" in res.report[0]["reasons"][0]
    assert "mix - vocal" in res.summary["separation"]
    row = data.load_prepared(res.dataset_dir)["train"][0]
    assert row["prompt"].shape == (3, 250) and (row["prompt"][:, 151:] == 16385).all()  # 6 s = 151 frames, then empty
    assert calls == [("load", "htdemucs.pth", "cpu", 3), ("separate", (2, 6 * 48000), 48000, "mix_minus_vocal")]


def test_demucs_is_used_when_its_checkpoint_is_found(songs, tmp_path, ws, monkeypatch):
    """auto separation + a runtime holding third_party/demucs/ckpt/htdemucs.pth -> Demucs, recorded in the report.
    The fixture's htdemucs is the official structure at tiny width, so its two narrow kwargs are passed in."""
    pytest.importorskip("demucs")
    separation = pytest.importorskip("core.audio.separation")
    runtime = SHARED / "fixtures" / "songgen-codec-tiny"
    orig = separation.Separator.from_checkpoint.__func__

    def tiny(cls, pth, yaml_path=None, kwargs=None, device="cpu", seed=0):
        return orig(cls, pth, yaml_path, {"channels": 8, "bottom_channels": 32}, device, seed)
    monkeypatch.setattr(separation.Separator, "from_checkpoint", classmethod(tiny))
    short = write_song(tmp_path / "short.wav", 6, seed=7)
    codec = CountingCodec()
    cfg = cfg_for(ws, tmp_path / "prep", **{"paths.runtime_path": str(runtime), "data.min_duration_s": 1.0})
    res = data.prepare(cfg, items=[{"audio": str(short), "lyrics": GOOD_LYRICS}], codec=codec)
    assert res.report[0]["status"] == "warning", res.report[0]
    assert res.report[0]["separation"].startswith("Demucs htdemucs") and "drums + bass + other" in res.report[0]["separation"]
    assert "Demucs" in json.loads(res.report_path.read_text())["summary"]["separation"]
    assert codec.calls == [{"n": 6 * 48000, "stems": True}]
