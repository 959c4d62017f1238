"""Section timing through prepare and the trainer's crops: a 60-s song with an LRC prepared for a model with
max_dur 20 s becomes items of <= 20 s carrying exactly their own sections' lyrics (EOS only on the last);
an untimed long song is refused with the ways to add timing; a memory crop without timing is refused for
an official checkpoint; crops of timed items follow section boundaries and their lyrics."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from core import data
from core.config import ConfigError, load_config
from core.training.dataset import SongSet
from core.text.lyrics import SEP
from core.training.demo_pretrain import ensure_demo_model
from tests.datagen import LRC_60, write_song



@pytest.fixture(scope="module")
def short_model(tmp_path_factory):
    """The demo checkpoint with max_dur 20 s / min_dur 5 s (a copy beside it, same runtime)."""
    ws = tmp_path_factory.mktemp("timing-ws")
    demo = ensure_demo_model(ws)
    ckpt = demo.parent / "short20"
    shutil.copytree(demo, ckpt)
    conf = yaml.safe_load((ckpt / "config.yaml").read_text(encoding="utf-8"))
    conf.update(max_dur=20, min_dur=5)
    (ckpt / "config.yaml").write_text(yaml.safe_dump(conf, sort_keys=False), encoding="utf-8")
    return ws, ckpt


@pytest.fixture(scope="module")
def prepared(short_model, tmp_path_factory):
    ws, ckpt = short_model
    root = tmp_path_factory.mktemp("timing-songs")
    songs = root / "songs"
    write_song(songs / "city.wav", seconds=60.0, sr=16000, seed=3)
    (songs / "city.lrc").write_text(LRC_60, encoding="utf-8")          # sidecar; no city.txt: lyrics from the LRC
    write_song(songs / "untimed.wav", seconds=45.0, sr=16000, seed=4)
    (songs / "untimed.txt").write_text("[verse] la la la. ; [chorus] oh oh.", encoding="utf-8")
    write_song(songs / "short.wav", seconds=12.0, sr=16000, seed=5)
    (songs / "short.txt").write_text("[verse] one line. ; [chorus] two lines.", encoding="utf-8")
    cfg = load_config(None, {"workspace": str(ws), "paths.base_model_path": str(ckpt),
                             "paths.raw_data_dir": str(songs), "paths.prepared_data_dir": str(root / "prepared"),
                             "data.val_fraction": 0.0})
    return data.prepare(cfg)


def test_60s_song_with_lrc_split_for_max_dur_20(prepared):
    res = prepared
    by = {e["idx"]: e for e in res.report}
    city = by["city"]
    assert city["status"] != "rejected", city["reasons"]
    assert city["timing"] == "lrc"
    rows = [r for r in data.load_prepared(res.dataset_dir)["train"] if r["idx"] == "city"]
    rows.sort(key=lambda r: r["start_s"])
    assert len(rows) == 4
    secs = city["sections"]                                     # the song's timed sections, as reported
    lyric_sections = city["lyrics"].split(SEP)
    assert len(lyric_sections) == len(secs) == 7
    bounds = [s["start_s"] for s in secs] + [60.0]
    for r in rows:
        assert r["end_s"] - r["start_s"] <= 20.0 + 1e-6
        assert r["num_frames"] == r["codes"].shape[1] <= 20 * 25
        inside = [k for k in range(7) if bounds[k] >= r["start_s"] - 1e-6 and bounds[k + 1] <= r["end_s"] + 1e-6]
        assert r["lyrics"] == SEP.join(lyric_sections[k] for k in inside)   # exactly the sections in the window
        assert r["timing"] == "lrc"
        assert [s["tag"] for s in json.loads(r["sections"])] == [secs[k]["tag"] for k in inside]
    assert [r["reaches_end"] for r in rows] == [False, False, False, True]   # EOS only on the last
    assert rows[0]["start_s"] == 0.0 and rows[-1]["end_s"] == pytest.approx(60.0, abs=0.05)
    assert all(a["end_s"] == b["start_s"] for a, b in zip(rows, rows[1:]))
    assert city["lyrics"].startswith("[intro-short] ; [verse] the city lights are calling.i walk alone tonight. ;")
    # every item conditions on its own sections and the same song's prompt
    assert len({tuple(r["prompt"].flatten().tolist()) for r in rows}) == 1
    manifest = [json.loads(x) for x in (res.dataset_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    m = sorted((x for x in manifest if x["idx"] == "city"), key=lambda x: x["start_s"])
    assert [(x["start_s"], x["end_s"], x["lyrics"], x["reaches_end"], x["timing"]) for x in m] == \
        [(r["start_s"], r["end_s"], r["lyrics"], r["reaches_end"], r["timing"]) for r in rows]


def test_untimed_song_longer_than_max_dur_rejected_with_the_ways_to_add_timing(prepared):
    e = {e["idx"]: e for e in prepared.report}["untimed"]
    assert e["status"] == "rejected"
    msg = " ".join(e["reasons"])
    assert "untimed.wav lasts 45.0 s" in msg and "max_dur of 20 s" in msg
    assert "NAME.lrc" in msg and '"lrc"' in msg and "Timing editor" in msg
    short = {e["idx"]: e for e in prepared.report}["short"]
    assert short["status"] != "rejected" and short["timing"] == "none"


def test_memory_crop_without_timing_refused_for_an_official_checkpoint(prepared):
    split = data.load_prepared(prepared.dataset_dir)["train"]
    # 8 s crops: the 12-s untimed song would lose the tie between its lyrics and its audio
    with pytest.raises(ConfigError, match=r"without section timing \(short\).*LRC"):
        SongSet(split, 200, seed=0, random_crop=True, allow_random_crop=False)
    short = split.select([i for i, r in enumerate(split.with_format(None)) if r["idx"] == "short"])
    demo = SongSet(short, 200, seed=0, random_crop=True, allow_random_crop=True)   # the demo model may
    assert any("demo model only" in n for n in demo.notes)
    assert demo.item(0, 0)["codes"].shape[1] == 200
    # a timed item whose every section is longer than the crop cannot be cut on boundaries either
    with pytest.raises(ConfigError, match="shorter than every section of city"):
        SongSet(split, 200, seed=0, random_crop=True, allow_random_crop=True)


def test_memory_crops_of_timed_items_follow_sections(prepared):
    split = data.load_prepared(prepared.dataset_dir)["train"]
    keep = [i for i, r in enumerate(split.with_format(None)) if r["idx"] == "city"]
    ss = SongSet(split.select(keep), 12 * 25, seed=0, random_crop=True, allow_random_crop=False)
    seen = set()
    for i in range(len(ss)):
        row = ss.split[i]
        bounds = [round(s["start_s"] * 25) for s in json.loads(row["sections"])] + [row["num_frames"]]
        parts = row["lyrics"].split(SEP)
        for epoch in range(6):
            it = ss.item(i, epoch)
            start, n = ss.crop(i, epoch)[:2]
            assert it["codes"].shape[1] == n <= 300
            if row["num_frames"] > 300:
                assert start in bounds and start + n in bounds
                a, b = bounds.index(start), bounds.index(start + n)
                assert it["lyrics"] == SEP.join(parts[a:b])
                assert it["reaches_end"] == (row["reaches_end"] and start + n == row["num_frames"])
                seen.add((i, a, b))
            else:
                assert it["lyrics"] == row["lyrics"]
    assert len(seen) > 2


def test_inputs_read_lrc_and_timing(tmp_path):
    """metadata.jsonl "lrc" (relative like "path") and "timing"; folder NAME.lrc sidecar (lyrics optional then)."""
    (tmp_path / "wavs").mkdir()
    write_song(tmp_path / "wavs" / "a.wav", seconds=2.0, sr=8000)
    (tmp_path / "wavs" / "a.lrc").write_text("[00:00.50][verse] hi\n", encoding="utf-8")
    lines = [{"idx": "a", "path": "wavs/a.wav", "lrc": "wavs/a.lrc"},                      # no gt_lyric: the LRC's
             {"idx": "b", "path": "wavs/a.wav", "gt_lyric": "[verse] x.", "lrc": "wavs/missing.lrc"},
             {"idx": "c", "path": "wavs/a.wav", "gt_lyric": "[verse] x.", "timing": {"sections": [{"tag": "[verse]"}]}},
             {"idx": "d", "path": "wavs/a.wav", "gt_lyric": "[verse] x.",
              "timing": {"source": "edited", "sections": [{"tag": "[verse]", "start_s": 0}]}}]
    meta = tmp_path / "metadata.jsonl"
    meta.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    songs = {s.idx: s for s in data.load_metadata(meta)}
    assert songs["a"].lrc == str(tmp_path / "wavs" / "a.lrc") and not songs["a"].problems
    assert "LRC file 'wavs/missing.lrc' not found" in songs["b"].problems[0]
    assert "'timing' must be" in songs["c"].problems[0]
    assert songs["d"].timing["source"] == "edited" and not songs["d"].problems
    folder = {s.idx: s for s in data.scan_folder(tmp_path / "wavs")}
    assert folder["a"].lrc.endswith("a.lrc") and folder["a"].lyrics is None and not folder["a"].problems


def test_the_lyric_token_budget_holds_per_training_item(short_model, prepared, tmp_path):
    """A long timed song trains as items, each conditioned on its own sections' lyrics: the model's
    lyric budget applies to each item, not to the whole song's text."""
    ws, ckpt = short_model
    rows = [r for r in data.load_prepared(prepared.dataset_dir)["train"] if r["idx"] == "city"]
    whole = {e["idx"]: e for e in prepared.report}["city"]["lyrics"]
    cfg = load_config(None, {"workspace": str(ws), "paths.base_model_path": str(ckpt)})
    count = data.model_limits(cfg).lyric_tokens
    largest = max(count(r["lyrics"]) for r in rows)
    assert count(whole) > largest  # the whole song needs more than any one item

    songs = tmp_path / "songs"
    write_song(songs / "city.wav", seconds=60.0, sr=16000, seed=3)
    (songs / "city.lrc").write_text(LRC_60, encoding="utf-8")
    outcome = {}
    for budget in (largest, largest - 1):
        model = tmp_path / f"budget{budget}"
        shutil.copytree(ckpt, model)
        conf = yaml.safe_load((model / "config.yaml").read_text(encoding="utf-8"))
        conf["conditioners"]["description"]["QwTokenizer"]["max_len"] = budget  # the lyric budget
        (model / "config.yaml").write_text(yaml.safe_dump(conf, sort_keys=False), encoding="utf-8")
        res = data.prepare(load_config(None, {
            "workspace": str(ws), "paths.base_model_path": str(model), "paths.raw_data_dir": str(songs),
            "paths.prepared_data_dir": str(tmp_path / f"prepared{budget}"), "data.val_fraction": 0.0}))
        outcome[budget] = res.report[0]
    assert outcome[largest]["status"] != "rejected", outcome[largest]["reasons"]
    assert outcome[largest - 1]["status"] == "rejected"
    assert any("lyrics of item" in r and "over the model's budget" in r for r in outcome[largest - 1]["reasons"])


LRC_20 = "[00:00.00][verse] the night is young\n[00:09.00][chorus] hold on hold on\n"


def test_songs_exactly_max_dur_long_prepare_and_train_whole(short_model, tmp_path):
    """The codec makes floor(s*25)+1 frames: a 20.0-s song is 501 frames for a 500-frame model. With and
    without timing it must train whole (one window, EOS kept), not be refused or halved."""
    ws, ckpt = short_model
    songs = tmp_path / "songs"
    for k, name in enumerate(("plain", "plain2", "timed", "timed2")):
        write_song(songs / f"{name}.wav", seconds=20.0, sr=16000, seed=20 + k)
        if name.startswith("timed"):
            (songs / f"{name}.lrc").write_text(LRC_20, encoding="utf-8")
        else:
            (songs / f"{name}.txt").write_text("[verse] the night is young. ; [chorus] hold on.", encoding="utf-8")
    cfg = load_config(None, {"workspace": str(ws), "paths.base_model_path": str(ckpt),
                             "paths.raw_data_dir": str(songs), "paths.prepared_data_dir": str(tmp_path / "prep"),
                             "data.val_fraction": 0.0, "training.max_frames": 0})   # 0 = the model's max_dur
    res = data.prepare(cfg)
    assert all(e["status"] != "rejected" for e in res.report), res.report
    split = data.load_prepared(res.dataset_dir)["train"]
    rows = split.with_format(None)
    assert sorted(r["idx"] for r in rows) == ["plain", "plain2", "timed", "timed2"]   # one item per song
    assert all(r["num_frames"] == len(r["codes"][0]) == 500 and r["reaches_end"] for r in rows)
    ss = SongSet(split, 500, seed=0, random_crop=True, allow_random_crop=False)       # what train builds
    for i in range(len(ss)):
        for epoch in range(3):
            assert ss.crop(i, epoch)[:3] == (0, 500, True)                            # whole, EOS kept
            assert ss.item(i, epoch)["lyrics"] == rows[i]["lyrics"]
    # a dataset prepared before the fit (501 frames) is told to prepare again, not to raise max_frames
    old = split.with_format(None).to_dict()
    old["codes"] = [[c + [c[-1]] for c in codes] for codes in old["codes"]]
    old["num_frames"] = [n + 1 for n in old["num_frames"]]
    old["sections"] = ["[]"] * len(old["num_frames"])
    from datasets import Dataset
    with pytest.raises(ConfigError, match="one codec frame longer .* prepare the dataset again"):
        SongSet(Dataset.from_dict(old), 500, seed=0, random_crop=True, allow_random_crop=False)
