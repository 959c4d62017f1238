"""The studio shows what core decides: the same songs (good, broken, timed long, Chinese) go through the
studio's backend and through core, and what the tabs show equals what prepare / the trainer then do.

One test per rule the studio used to own: the token budget and plan (what prepare makes of each song),
the duration plot, presets (their crop fitted to the prepared data), and the Train form's check before
launch (the trainer's own data check, naming the value that would work)."""
from __future__ import annotations

import pytest

from core import data
from core.config import ConfigError
from core.runs import store as runs
from core.training.dataset import SongSet
from core.training.preflight import check_training
from core.training.presets import DEFAULT_PRESET, PRESETS, preset_values, refit_crop
from studio import backend
from studio.feedback import UserError
from studio.state import Workspace
from tests.datagen import write_song

# a 190-s song with section starts, every section (18-30 s) longer than the Quick-look crop (6 s)
SECTIONS = [(0, "intro", ""), (22, "verse", "the road runs north"), (52, "chorus", "hold on to the light"),
            (82, "inst", ""), (100, "verse", "the river carries me"), (130, "chorus", "hold on to the light"),
            (160, "outro", "")]
LRC = "\n".join(f"[{t // 60:02d}:{t % 60:02d}.00][{tag}] {words}".rstrip() for t, tag, words in SECTIONS) + "\n"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A demo workspace tokenized through the studio: timed long, good, Chinese and broken songs."""
    root = tmp_path_factory.mktemp("agree")
    w = Workspace(root / "ws")
    w.set_state(**{"data.codec": "demo", "data.val_fraction": 0.0})
    long_wav = write_song(root / "north_road.wav", seconds=190.0, sr=16000, seed=1)
    (root / "north_road.lrc").write_text(LRC, encoding="utf-8")
    idx = w.add_song(long_wav, "", "pop")
    w.attach_lrc(idx, root / "north_road.lrc")
    w.add_song(write_song(root / "good.wav", seconds=10.0, sr=16000, seed=2),
               "[verse] la la la. ; [chorus] oh oh oh.", "female, pop")
    w.add_song(write_song(root / "river.wav", seconds=12.0, sr=16000, seed=3),
               "[verse] 啊，河流带我远行 ; [chorus] 我们一起唱", "female, pop")
    broken = root / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    w.add_song(broken, "[verse] never heard.", "pop")
    backend.prepare(w)
    return w


def _cfg(w, **over):
    return backend.train_config(w, {"base_kind": "demo", "base_path": "", **over})


def test_budget_table_is_what_prepare_cut(ws):
    shown = backend.last_prepare(ws)
    assert shown is not None
    report = shown["budget_rows"]
    rows = {}
    for r in data.load_prepared(ws.get_state()["dataset_dir"])["train"]:
        rows.setdefault(r["idx"], []).append(int(r["num_frames"]))
    by_song: dict[str, list] = {}
    for song, frames, context, _, rule in report:
        by_song.setdefault(song, []).append((frames, rule))
        assert context == 3750 and "cropped" not in rule
    assert set(by_song) == set(rows)                         # the usable songs, the broken one not among them
    for song, got in by_song.items():
        assert sorted(f for f, _ in got) == sorted(rows[song])    # the frames of each item prepare wrote
    assert [rule for _, rule in by_song["north_road"]] == [
        "section-aligned item 1 of 2 (0-100 s)", "section-aligned item 2 of 2 (100-190 s)"]
    assert by_song["good"] == [(rows["good"][0], "fits")]


def test_plan_says_what_prepare_then_does(ws):
    """The dry run (plan) plans the same items as the tokenize made, song by song."""
    cfg = backend._prepare_cfg(ws)
    planned = data.plan(cfg)
    done = backend.last_prepare(ws)
    assert sorted(planned["rejected"]) == ["broken"]
    rate, ctx = planned["model"]["frame_rate"], planned["model"]["max_frames"]
    plan_rows = [(b["idx"], b["item"], b["items"], b["start_s"], b["end_s"])
                 for b in data.token_budget(planned["report"], rate, ctx)]
    import json
    from pathlib import Path
    rep = json.loads(Path(ws.get_state()["report_path"]).read_text(encoding="utf-8"))
    done_rows = [(b["idx"], b["item"], b["items"], b["start_s"], b["end_s"])
                 for b in data.token_budget(rep["songs"], rate, ctx)]
    assert plan_rows == done_rows and len(done_rows) == len(done["budget_rows"]) == 4


def test_duration_plot_has_bars_after_tokenize(ws):
    from studio.tabs.tokenize import hist_plot
    shown = backend.last_prepare(ws)
    assert sum(n for _, n in shown["hist_rows"]) == 3        # good, Chinese, timed long; not the broken one
    assert ("180-210", 1) in shown["hist_rows"]
    assert hist_plot(shown["hist_rows"], "en") is not None
    assert hist_plot([], "en") is None                       # the placeholder, never an empty frame


def test_quick_look_crop_is_refused_naming_the_value_that_works(ws):
    """The raw preset crop (150 frames) on timed long songs: the form's check is the trainer's refusal,
    and it names the smallest crop that starts and the one that trains every section."""
    raw = {k: v for k, v in PRESETS[DEFAULT_PRESET].items()}
    cfg = _cfg(ws, **raw)
    chk = check_training(cfg)
    assert not chk.ok and chk.crop_too_short
    # the second item (100-190 s) has only 30-s sections: 750 frames is the least that starts
    assert chk.fit.needed == 30 * 25 and chk.fit.all_sections == 30 * 25 + 1
    assert f"training.max_frames = {chk.fit.needed}" in chk.message
    ds = data.load_prepared(chk.dataset_dir)
    with pytest.raises(ConfigError) as err:               # the trainer's own construction
        SongSet(ds["train"], 150, cfg.training.seed, random_crop=True, allow_random_crop=True)
    assert str(err.value) == chk.error
    assert "750" in backend.check_text(cfg, "en") and "750" in backend.check_text(cfg, "zh")
    before = set(p.name for p in (ws.root / "runs").glob("*")) if (ws.root / "runs").is_dir() else set()
    with pytest.raises(UserError, match="Use at least 750"):
        backend.start_new_run(ws, {"base_kind": "demo", "base_path": "", **raw})
    after = set(p.name for p in (ws.root / "runs").glob("*")) if (ws.root / "runs").is_dir() else set()
    assert after == before                                 # refused before anything was created


def test_default_preset_fits_the_prepared_data_and_its_first_run_starts(ws):
    values, note = backend.preset_values(ws, DEFAULT_PRESET, "demo")
    fit = backend.data_fit(ws, "demo")
    assert values["training.max_frames"] == fit.all_sections == 751 and "751" in note
    assert preset_values(DEFAULT_PRESET, "demo")["training.max_frames"] == 150   # the preset itself is unchanged
    assert refit_crop(150, DEFAULT_PRESET, "demo", fit) == 751      # a tokenize re-fits the preset's crop
    assert refit_crop(900, DEFAULT_PRESET, "demo", fit) is None     # a chosen crop the trainer takes stays
    cfg = _cfg(ws, **values)
    assert check_training(cfg).ok
    # the trainer's setup with these settings (one step, in this process): it gets past the data check
    from core.training.trainer import train
    cfg1 = _cfg(ws, **{**values, "training.max_steps": 1, "training.eval_every": 5, "training.save_every": 10,
                       "training.num_samples": 0, "training.sample_every": 0})
    run = runs.create_run(cfg1, name="first-run")
    assert train(runs.load_run_config(run), config_path=run / runs.CONFIG_NAME) == "done"


def test_last_settings_come_back_after_a_reload(ws, tmp_path):
    """The form's settings are kept with the workspace when a run starts; a new page (a reload) shows them."""
    from studio.app import build_app
    from studio.space import SpaceInfo
    values, _ = backend.preset_values(ws, DEFAULT_PRESET, "demo")
    backend.save_settings(ws, {**values, "training.max_frames": 900, "lora.r": 6, "base_kind": "demo"})
    app = build_app(workspace=ws.root, space=SpaceInfo(False, None, False, False))
    ui = app.studio_ui["train"]
    updates = ui["restore"]()
    shown = {getattr(c, "elem_id", None): u.get("value") for c, u in zip(ui["restore_outs"], updates)
             if isinstance(u, dict) and "value" in u}
    assert shown["max-frames"] == 900
    assert backend.saved_settings(ws)["lora.r"] == 6
    ws.set_state(train_settings={})


def test_validation_slider_allows_what_the_config_allows(tmp_path):
    from core.config import field_spec
    from studio.app import build_app
    from studio.space import SpaceInfo
    app = build_app(workspace=tmp_path, space=SpaceInfo(False, None, False, False))
    slider = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "val-fraction")
    assert slider.maximum == field_spec("data.val_fraction").maximum == 1


def test_bulk_import_pairs_files_as_a_folder_given_to_prepare(tmp_path):
    """The studio's bulk import and core's folder reader (core.data.inputs.scan_folder) take the same
    files with the same sidecars: NAME.txt lyrics, NAME.desc.txt description, NAME.lrc; .m4a is neither's."""
    from core.data.inputs import scan_folder
    folder = tmp_path / "songs"
    write_song(folder / "dawn.wav", seconds=6.0, sr=16000, seed=4)
    (folder / "dawn.txt").write_text("[verse] first light. ; [chorus] rise up.", encoding="utf-8")
    (folder / "dawn.desc.txt").write_text("female, pop", encoding="utf-8")
    write_song(folder / "river.wav", seconds=6.0, sr=16000, seed=5)
    (folder / "river.txt").write_text("[verse] 啊，河流带我远行 ; [chorus] 我们一起唱", encoding="utf-8")
    (folder / "river_desc.txt").write_text("male, folk", encoding="utf-8")     # not the naming rule: no description
    (folder / "phone.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A ")
    w = Workspace(tmp_path / "ws")
    added, problems = w.import_files(sorted(str(p) for p in folder.iterdir()))
    core_songs = {s.idx: s for s in scan_folder(folder)}
    assert sorted(added) == sorted(core_songs) == ["dawn", "river"]
    for idx in added:
        song = w.song(idx)
        assert song["gt_lyric"] == core_songs[idx].lyrics.strip()
        assert (song["descriptions"] or None) == core_songs[idx].description


def test_timing_editor_refuses_what_prepare_refuses(ws):
    """Starts the editor saves are checked by prepare's own steps: a section longer than the model's
    max_dur (150 s on the demo) cannot be split into items, so the editor refuses it with prepare's words."""
    from core.timing.resolve import resolve, song_items
    from studio import timing_edit as te
    song = ws.song("north_road")
    before = song.get("timing")
    starts = [0.0, 10.0, 170.0, 174.0, 178.0, 182.0, 186.0]     # a 160-s verse
    with pytest.raises(te.TimingEditError) as err:
        te.save_starts(ws, "north_road", starts)
    assert ws.song("north_road").get("timing") == before            # nothing saved
    saved = {"source": "edited", "sections": [{"tag": tag, "start_s": s} for (tag, _), s in
                                              zip(te.view(ws, "north_road").sections, starts)]}
    res = resolve(gt_lyric=song["gt_lyric"] or None, duration_s=190.0, lrc_path=song["lrc_path"], saved=saved)
    core_errors = res.errors or song_items(res, 190.0, 150.0, 0.0, song["source_name"])[2]
    assert core_errors and str(err.value) == "; ".join(core_errors)
    good = [s for s, _, _ in SECTIONS]
    assert te.save_starts(ws, "north_road", [float(s) for s in good]).source == "edited"
    ws.update_song("north_road", timing=before)


def test_song_check_is_what_prepare_then_reports(ws):
    """The Data tab's check (backend.check_songs -> core.data.steps.check_song) gives every song the status
    and reasons prepare wrote in its report: good, broken, timed long, Chinese."""
    import json
    from pathlib import Path
    from studio.tabs import data as data_tab
    checks = backend.check_songs(ws, ws.songs())
    rep = json.loads(Path(ws.get_state()["report_path"]).read_text(encoding="utf-8"))
    done = {e["idx"]: e for e in rep["songs"]}
    assert set(checks) == set(done) == {"north_road", "good", "river", "broken"}
    for idx, chk in checks.items():
        assert (chk["status"], chk["reasons"]) == (done[idx]["status"], done[idx]["reasons"]), idx
    assert checks["broken"]["status"] == "rejected"
    assert any("split at section boundaries into 2 training items" in r for r in checks["north_road"]["reasons"])
    for idx, chk in checks.items():
        ws.update_song(idx, check=chk)
    table = data_tab.songs_table(type("Ctx", (), {"ws": ws, "lang": "en"})())
    from studio.i18n import status_word
    assert {r[0]: r[6] for r in table.values.tolist()} == {i: status_word(e["status"], "en") for i, e in done.items()}
