"""The studio and the trainer as an attacker would try them (issue 15).

- exfiltration: an uploaded metadata.jsonl naming /proc/self/environ, /etc/passwd, '../' escapes and a
  server file with an audio name -> a refusal per line and not one byte of those files anywhere;
- public Space mode: two visitors (two gradio_client sessions against the launched studio) each see
  only their own songs and runs, cannot act on the other's run or checkpoint, cannot change the base
  model to a Hub id (a download) or a server folder, and meet their quota;
- a pickle bomb (an object whose __reduce__ writes a marker file) in every file of a checkpoint
  folder never runs on resume, merge, generate or push;
- a truncated latest checkpoint: resume continues from the previous one and says so;
- a second trainer on a locked output_dir exits with a message naming the holder;
- a full disk during a checkpoint save ends the run `failed` with "disk full";
- every malformed-metadata case gets its own reason, and the other songs are prepared.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.datagen import GOOD_LYRICS, write_song  # noqa: E402
from tests.studio_server import serve  # noqa: E402

SECRET = "hf_EXFILTRATION_MARKER_5c1e"


def _tree_contains(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            try:
                if needle in p.read_bytes():
                    hits.append(p)
            except OSError:
                continue
    return hits


@pytest.fixture()
def secret_files(tmp_path, monkeypatch):
    """A secret in this process's environment (what /proc/self/environ shows the studio) and a
    server file with an audio name outside any upload."""
    monkeypatch.setenv("HF_TOKEN_FOR_TEST", SECRET)
    outside = tmp_path / "server-only"
    outside.mkdir()
    stolen = outside / "stolen.wav"
    stolen.write_bytes(b"RIFF" + SECRET.encode() * 10)
    return stolen


def _attack_jsonl(folder: Path, stolen: Path) -> Path:
    rows = [{"idx": "env", "path": "/proc/self/environ", "gt_lyric": "x"},
            {"idx": "pw", "path": "/etc/passwd", "gt_lyric": "x"},
            {"idx": "up", "path": "../../../../../../etc/passwd", "gt_lyric": "x"},
            {"idx": "up2", "path": "../../../proc/self/environ", "gt_lyric": "x"},
            {"idx": "srv", "path": str(stolen), "gt_lyric": "x"},
            {"idx": "rel", "path": "server-only/stolen.wav", "gt_lyric": "x"}]
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "metadata.jsonl"
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return meta


# ---- 1. exfiltration ----------------------------------------------------------------------------
@pytest.mark.parametrize("public", [False, True], ids=["local-studio", "public-space"])
def test_exfiltration_through_the_api_is_refused_and_leaks_nothing(tmp_path, secret_files, monkeypatch, public):
    from gradio_client import Client, handle_file

    from studio.app import build_app
    from studio.space import SpaceInfo

    ws = tmp_path / "ws"
    space = SpaceInfo(on_space=public, space_id="x/y" if public else None, demo_mode=public,
                      persistent_data=False, public=public)
    demo = build_app(workspace=ws, space=space)
    try:
        client = Client(serve(demo), verbose=False)
        meta = _attack_jsonl(tmp_path / "upload", secret_files)
        out = client.predict([handle_file(str(meta))], api_name="/import_files")
        msg = out[2]
        assert "Imported 0" in msg, msg
        for n in range(1, 7):
            assert f"metadata.jsonl line {n}: audio" in msg and "was not uploaded" in msg, msg
        assert "never read from the server" in msg
        assert out[1]["choices"] == []
        # nothing of those files was copied, written or sent back
        assert _tree_contains(ws, SECRET.encode()) == []
        assert _tree_contains(ws, b"root:x:0:0") == []
        assert SECRET not in json.dumps(out, default=str)
        # a song name that walks out of uploads/songs shows nothing (refused by the song list, and by
        # the workspace itself when called directly)
        with pytest.raises(Exception, match="not in the list of choices"):
            client.predict("../../../..", api_name="/song_detail")
        assert demo.studio_ctx.base_ws.song("../../../..") is None
    finally:
        demo.close()


def test_local_studio_reads_only_the_folders_its_user_named(tmp_path, secret_files):
    """--import-root: a jsonl may name files inside it; '..', absolute paths elsewhere and links out are refused."""
    from studio.state import Workspace

    root = tmp_path / "music"
    root.mkdir()
    good = write_song(root / "good.wav", seconds=2.0, seed=1)
    (root / "link.wav").symlink_to(secret_files)  # a link inside the root pointing out of it
    ws = Workspace(tmp_path / "ws", import_roots=[root])
    meta = tmp_path / "up" / "metadata.jsonl"
    meta.parent.mkdir()
    meta.write_text("\n".join(json.dumps(r) for r in [
        {"idx": "ok", "path": str(good), "gt_lyric": GOOD_LYRICS},
        {"idx": "rel_ok", "path": "good.wav", "gt_lyric": GOOD_LYRICS},
        {"idx": "out", "path": str(secret_files), "gt_lyric": "x"},
        {"idx": "dots", "path": str(root / ".." / "server-only" / "stolen.wav"), "gt_lyric": "x"},
        {"idx": "link", "path": str(root / "link.wav"), "gt_lyric": "x"},
    ]) + "\n", encoding="utf-8")
    added, problems = ws.import_files([meta])
    assert added == ["ok", "rel_ok"]
    text = "\n".join(problems)
    assert "line 3" in text and f"only files inside {root.resolve()}" in text
    assert "line 4" in text and "'..' is refused" in text
    assert "line 5" in text
    assert _tree_contains(ws.root, SECRET.encode()) == []
    # the same jsonl on a studio without --import-root reads nothing from the server
    ws2 = Workspace(tmp_path / "ws2")
    added2, problems2 = ws2.import_files([meta])
    assert added2 == [] and len(problems2) == 5


# ---- 2. public Space: two visitors ------------------------------------------------------------------
def test_two_public_visitors_see_only_their_own_songs_and_runs(tmp_path, monkeypatch):
    from gradio_client import Client, handle_file

    from core.runs import store as runs
    from core.config import parse_config
    from studio.app import build_app
    from studio.space import SpaceInfo

    monkeypatch.setenv("STUDIO_QUOTA_SONGS", "2")
    ws = tmp_path / "ws"
    demo = build_app(workspace=ws, space=SpaceInfo(on_space=True, space_id="x/y", demo_mode=True,
                                                   persistent_data=False, public=True))
    try:
        url = serve(demo)
        alice, bob = Client(url, verbose=False), Client(url, verbose=False)
        assert alice.session_hash != bob.session_hash
        wav = write_song(tmp_path / "alice_song.wav", seconds=2.0, seed=3)
        out = alice.predict(handle_file(str(wav)), GOOD_LYRICS, "female, pop", api_name="/add_song")
        assert [c[1] for c in out[1]["choices"]] == ["alice_song"]
        # Bob's table and song list are empty; Alice still sees hers
        assert bob.predict(None, api_name="/check_songs")[1]["choices"] == []
        assert [c[1] for c in alice.predict(None, api_name="/check_songs")[1]["choices"]] == ["alice_song"]
        with pytest.raises(Exception, match="not in the list of choices"):
            bob.predict("alice_song", api_name="/song_detail")

        # Alice's sandbox holds her song; nothing is in the shared workspace itself
        boxes = sorted((p for p in (ws / "sandboxes").iterdir() if not p.name.startswith(".")),
                       key=lambda p: not (p / "uploads/songs/alice_song/song.json").is_file())
        assert len(boxes) == 2 and (boxes[0] / "uploads/songs/alice_song/song.json").is_file()
        assert not (boxes[1] / "uploads/songs").exists() or not any((boxes[1] / "uploads/songs").iterdir())
        assert not (ws / "uploads").exists()
        # a run (and a checkpoint) in Alice's sandbox: listed for her only, untouchable for Bob
        cfg = parse_config({"workspace": str(boxes[0]), "paths": {"base_model_path": "demo"}})
        run = runs.create_run(cfg, name="alice-run")
        (run / "checkpoints" / "step-1").mkdir(parents=True)
        (run / "checkpoints" / "step-1" / "trainer_state.json").write_text("{}")
        assert [c[1] for c in alice.predict(None, api_name="/list_runs")["choices"]] == [str(run)]
        assert bob.predict(None, api_name="/list_runs")["choices"] == []
        for api in ("/stop_run", "/save_now", "/sample_now"):
            with pytest.raises(Exception):
                bob.predict(str(run), api_name=api)
        assert not (run / "control").exists()
        with pytest.raises(Exception):
            bob.predict(str(run / "checkpoints" / "step-1"), 1.0, api_name="/merge")
        # behind the per-session choice lists, the handlers check the sandbox themselves
        from studio import backend
        from studio.state import Workspace
        bob_ws = Workspace(ws / "sandboxes" / "bob-sandbox")
        with pytest.raises(Exception, match="not a run of this workspace"):
            backend.check_run_dir(bob_ws, str(run))
        with pytest.raises(Exception, match="not a checkpoint of this workspace"):
            backend.check_checkpoint(bob_ws, str(run / "checkpoints" / "step-1"))
        assert backend.check_checkpoint(Workspace(boxes[0]), str(run / "checkpoints" / "step-1"))

        # no visitor may point the base model at the Hub (a download) or at a server folder
        for kind, path in (("hub", "tencent/SongGeneration"), ("folder", "/etc")):
            with pytest.raises(Exception) as err:
                bob.predict(kind, path, api_name="/inspect_model")
            assert "only the demo model" in str(err.value)
        assert all("base_model" not in json.loads(p.read_text()) for p in (ws / "sandboxes").glob("*/studio.json"))

        # quota: 2 songs per sandbox
        alice.predict(handle_file(str(write_song(tmp_path / "second.wav", seconds=2.0, seed=4))), GOOD_LYRICS,
                      "", api_name="/add_song")
        with pytest.raises(Exception) as err:
            alice.predict(handle_file(str(write_song(tmp_path / "third.wav", seconds=2.0, seed=5))), GOOD_LYRICS,
                          "", api_name="/add_song")
        assert "song limit reached" in str(err.value)
    finally:
        demo.close()


def test_idle_sandboxes_are_cleaned_up(tmp_path):
    import time

    from studio.sandbox import LAST_SEEN, Limits, Sandboxes

    class Req:
        def __init__(self, h):
            self.session_hash, self.username = h, None

    boxes = Sandboxes(tmp_path, Limits(idle_anonymous_s=60, idle_user_s=3600))
    a = boxes.for_request(Req("aaa"))
    b = boxes.for_request(Req("bbb"))
    assert a.root != b.root and a.root.parent == b.root.parent == tmp_path.resolve() / "sandboxes"
    assert boxes.sandbox_id("session", "aaa") == a.root.name and "aaa" not in a.root.name
    old = time.time() - 120
    os.utime(a.root / LAST_SEEN, (old, old))
    assert boxes.sweep() == [a.root.name]
    assert not a.root.exists() and b.root.exists() and boxes.blank.root.exists()


# ---- 3. checkpoints: pickle bombs, truncation, lock, full disk --------------------------------------
class Bomb:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pickle bomb ran')",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step LoRA run of the small demo model with checkpoints step-2 and step-4 (in-process)."""
    from core.runs import store as runs
    from core.config import parse_config
    from core.data import prepare
    from core.training.trainer import train
    from tests.test_train import base_config, make_small_demo

    ws = tmp_path_factory.mktemp("adv-train")
    ckpt = make_small_demo(ws)
    items = [{"audio": str(write_song(ws / "wavs" / f"s{i}.wav", seconds=secs, seed=i)), "idx": f"s{i}",
              "lyrics": GOOD_LYRICS, "description": "female, pop"} for i, secs in enumerate([3.0, 3.2])]
    data = base_config(ws, ckpt, max_steps=4, save_every=2)
    data["data"]["val_fraction"] = 0.0
    res = prepare(parse_config(data), items=items)
    assert res.dataset_dir is not None, res.report
    data["training"]["dataset_dir"] = str(res.dataset_dir)
    run = runs.create_run(parse_config(data), name="ref")
    assert train(runs.load_run_config(run), config_path=run / runs.CONFIG_NAME) == "done"
    assert [p.name for p in runs.checkpoints(run)] == ["step-2", "step-4"]
    return {"ws": ws, "run": run, "ckpt": ckpt}


def _clone_run(src: Path, name: str) -> Path:
    """A copy of a run folder under the same workspace, its config pointing at the copy."""
    import shutil

    from core.runs import store as runs

    dst = src.parent / name
    shutil.copytree(src, dst)
    cfg = runs.load_run_config(dst)
    cfg.paths.output_dir = str(dst)
    cfg.save(dst / runs.CONFIG_NAME)
    runs.update_run_json(dst, run_id=name, status="done")
    return dst


def _events(run: Path, name: str) -> list[dict]:
    from core.runs import store as runs

    recs, _ = runs.read_metrics(run)
    return [r for r in recs if r.get("type") == "event" and r.get("event") == name]


def test_truncated_latest_checkpoint_resumes_from_the_previous_one(trained, capsys):
    from core.training import safe_state as cio
    from core.runs import store as runs
    from core.training.trainer import train

    run = _clone_run(trained["run"], "truncated")
    opt = run / "checkpoints/step-4/state/optimizer.bin"
    opt.write_bytes(opt.read_bytes()[: opt.stat().st_size // 2])  # a crash mid-write
    assert train(runs.load_run_config(run), resume="latest", config_path=run / runs.CONFIG_NAME) == "done"
    out = capsys.readouterr().out
    assert "resuming from step-2, the newest intact checkpoint: skipped step-4" in out
    assert "state/optimizer.bin has" in out and "truncated" in out
    assert f"resumed from {run / 'checkpoints/step-2'} at step 2" in out
    note = _events(run, "resume_fallback")
    assert len(note) == 1 and "step-4" in note[0]["message"]
    # steps 3-4 were trained again and step-4 is whole again
    assert cio.verify_checkpoint(run / "checkpoints/step-4") == []
    assert runs.read_run_json(run)["status"] == "done"


def _plant_bombs(ckpt: Path, marker: Path, keep_text: bool, fix_manifest: bool) -> None:
    import torch

    from core.training import safe_state as cio

    for p in list(ckpt.rglob("*")):
        if not p.is_file() or (keep_text and p.suffix in (".json", ".yaml", ".md")):
            continue
        if p.suffix in (".bin", ".pt"):
            torch.save(Bomb(marker), p)  # torch's zip format with the bomb as its pickle
        else:
            p.write_bytes(pickle.dumps(Bomb(marker)))
    if not keep_text:
        for extra in ("state/custom_checkpoint_0.pkl", "state/random_states_0.pkl"):
            (ckpt / extra).write_bytes(pickle.dumps(Bomb(marker)))
    if fix_manifest:  # an attacker who can write files can also rewrite the manifest
        for extra in ("state/custom_checkpoint_0.pkl", "state/random_states_0.pkl"):
            (ckpt / extra).unlink(missing_ok=True)
        cio.write_manifest(ckpt)


@pytest.mark.parametrize("keep_text,fix_manifest", [(False, False), (False, True), (True, True)],
                         ids=["every-file", "every-file+manifest", "weights-only+manifest"])
def test_pickle_bomb_in_a_checkpoint_never_runs(trained, tmp_path, monkeypatch, keep_text, fix_manifest):
    from core.runs import store as runs
    from core.training.trainer import train
    from studio import backend
    from studio.state import Workspace

    marker = tmp_path / "PWNED"
    # the bomb is live: plain pickle runs it
    pickle.loads(pickle.dumps(Bomb(marker)))
    assert marker.is_file()
    marker.unlink()

    run = _clone_run(trained["run"], f"bombed-{int(keep_text)}{int(fix_manifest)}")
    for ckpt in runs.checkpoints(run):
        _plant_bombs(ckpt, marker, keep_text, fix_manifest)
    cfg = runs.load_run_config(run)

    # resume: refused or failed cleanly, never unpickled
    with pytest.raises(Exception) as err:
        train(cfg, resume="latest", config_path=run / runs.CONFIG_NAME)
    assert not marker.exists(), f"resume ran the bomb ({err.value})"
    if not fix_manifest:
        assert "no intact checkpoint" in str(err.value) and "manifest.json is damaged" in str(err.value)

    # merge / generate / push through the studio's backend (what the Export tab calls)
    ws = Workspace(trained["ws"])
    ck = str(run / "checkpoints" / "step-4")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for call in (lambda: backend.merge(ws, ck, 1.0),
                 lambda: backend.generate(ws, ck, 1.0, GOOD_LYRICS, "pop", 1, 0, None),
                 lambda: backend.push(ws, ck, 1.0, "alice/x", True, True, False, False, token="hf_x")):
        with pytest.raises(Exception):
            call()
        assert not marker.exists()
    # and the core loaders themselves, past any studio check
    from core.export.merge import export_checkpoint
    with pytest.raises(Exception):
        export_checkpoint(ck, cfg=cfg, strength=1.0, out_dir=tmp_path / "merged", overwrite=True)
    assert not marker.exists()


def test_second_trainer_on_a_locked_output_dir_exits_naming_the_holder(trained, tmp_path):
    import subprocess
    import sys

    from core.runs import store as runs
    from tests.test_lock import _start_holder

    run = _clone_run(trained["run"], "locked")
    before = runs.read_run_json(run)
    files_before = sorted(p.relative_to(run) for p in run.rglob("*") if p.name != "train.lock")
    holder = _start_holder(run)  # a first trainer's lock (same RunLock the trainer takes)
    try:
        repo = Path(__file__).resolve().parents[1]
        proc = subprocess.run([sys.executable, "-m", "core", "train", "--config", str(run / "config.yaml"),
                               "--resume"], cwd=str(repo), capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, PYTHONPATH=str(repo)))
        assert proc.returncode == 3, proc.stderr[-2000:]
        assert f"is in use by another training process (pid {holder.pid} on host" in proc.stderr
        assert "holder-test" in proc.stderr
        # it touched nothing: run.json and metrics are as the first trainer left them
        assert runs.read_run_json(run) == before
        assert sorted(p.relative_to(run) for p in run.rglob("*") if p.name != "train.lock") == files_before
        # the studio refuses to start it too
        with pytest.raises(RuntimeError, match=f"pid {holder.pid}"):
            runs.start_run(run, resume=True)
    finally:
        holder.kill()
        holder.wait()


def test_full_disk_during_a_save_ends_the_run_failed(trained, monkeypatch):
    import errno

    import torch

    from core.training import safe_state as cio
    from core.runs import store as runs
    from core.training.trainer import train

    run = _clone_run(trained["run"], "diskfull")
    real_save = torch.save

    def full_disk(obj, f, *a, **kw):
        if "optimizer" in str(f):  # accelerate writes the optimizer state with torch.save
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(cio.DiskFullError):
        train(runs.load_run_config(run), resume="latest", config_path=run / runs.CONFIG_NAME)
    info = runs.read_run_json(run)
    assert info["status"] == "failed" and info["status"] in runs.TERMINAL
    assert info["error"].startswith("disk full while writing") and "MiB free" in info["error"]
    # the checkpoint it was replacing is still whole
    assert cio.verify_checkpoint(run / "checkpoints/step-4") == []


# ---- 4. malformed metadata: one reason each, the rest prepared ---------------------------------------
def test_every_malformed_metadata_case_gets_its_own_reason_and_the_rest_is_prepared(trained, tmp_path):
    from core.config import parse_config
    from core.data import prepare

    src = tmp_path / "songs"
    src.mkdir()
    wav = {n: write_song(src / f"{n}.wav", seconds=3.0, seed=i) for i, n in enumerate(
        ["good", "joined", "lyr_list", "lyr_int", "desc_bad", "huge", "tokens", "nan", "idx_list"])}
    long_words = " ".join(f"word{i}" for i in range(120))
    rows = [
        {"idx": "good", "path": str(wav["good"]), "gt_lyric": GOOD_LYRICS, "descriptions": "female, pop"},
        {"idx": "joined", "path": str(wav["joined"]), "gt_lyric": GOOD_LYRICS, "descriptions": ["female", "pop"]},
        {"idx": "lyr_list", "path": str(wav["lyr_list"]), "gt_lyric": ["[verse] a", "[chorus] b"]},
        {"idx": "lyr_int", "path": str(wav["lyr_int"]), "gt_lyric": 42},
        {"idx": "desc_bad", "path": str(wav["desc_bad"]), "gt_lyric": GOOD_LYRICS, "descriptions": ["pop", 7]},
        {"idx": "huge", "path": str(wav["huge"]), "gt_lyric": "[verse] " + "la " * 3_500_000},
        {"idx": "tokens", "path": str(wav["tokens"]), "gt_lyric": f"[verse] {long_words} ; [chorus] {long_words}"},
        {"idx": "nan", "path": str(wav["nan"]), "gt_lyric": GOOD_LYRICS, "prompt_start_s": float("nan")},
        {"idx": ["idx_list"], "path": str(wav["idx_list"]), "gt_lyric": GOOD_LYRICS},
    ]
    meta = tmp_path / "metadata.jsonl"
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # json writes NaN for nan
    cfg = parse_config({"workspace": str(trained["ws"]), "paths": {"base_model_path": str(trained["ckpt"]),
                                                                  "metadata_path": str(meta)},
                        "data": {"codec": "demo", "val_fraction": 0.0, "min_duration_s": 1.0, "prompt_offset_s": 0.0}})
    res = prepare(cfg)
    by = {e["idx"]: e for e in res.report}
    assert res.dataset_dir is not None
    ok = {i for i, e in by.items() if e["status"] != "rejected"}
    assert ok == {"good", "joined"}, {i: e.get("reasons") for i, e in by.items()}
    assert by["joined"]["description"] == "female, pop"  # a list of tags is joined, never "['female', 'pop']"

    def reason(idx):
        return " | ".join(by[idx]["reasons"])

    assert "'gt_lyric' must be a text string, got a list" in reason("lyr_list")
    assert "'gt_lyric' must be a text string, got a number" in reason("lyr_int")
    assert "'descriptions' is a list holding a number" in reason("desc_bad")
    assert "lyrics are 10,500,008 characters" in reason("huge")
    assert len(json.dumps(by["huge"])) < 5000  # the 10 MB are not copied into the report
    assert "tokens, over the model's budget of 48" in reason("tokens")
    assert "'prompt_start_s' must be a finite number" in reason("nan")
    assert "'idx' must be a name" in reason("line-9")
    assert all("unexpected error" not in reason(i) and "AttributeError" not in reason(i) for i in by)


def test_one_undecodable_lyrics_file_rejects_only_that_song(trained, tmp_path):
    from core.config import parse_config
    from core.data import prepare

    folder = tmp_path / "folder"
    folder.mkdir()
    write_song(folder / "fine.wav", seconds=3.0, seed=1)
    (folder / "fine.txt").write_text(GOOD_LYRICS, encoding="utf-8")
    write_song(folder / "broken.wav", seconds=3.0, seed=2)
    (folder / "broken.txt").write_bytes(b"\xff\xfe" + "[verse] hi".encode("utf-16-le") + b"\x00")  # odd length
    write_song(folder / "latin.wav", seconds=3.0, seed=3)
    (folder / "latin.txt").write_bytes("[verse] caf\u00e9".encode("latin-1"))
    cfg = parse_config({"workspace": str(trained["ws"]), "paths": {"base_model_path": str(trained["ckpt"]),
                                                                  "raw_data_dir": str(folder)},
                        "data": {"codec": "demo", "val_fraction": 0.0, "min_duration_s": 1.0, "prompt_offset_s": 0.0}})
    res = prepare(cfg)
    by = {e["idx"]: e for e in res.report}
    assert by["fine"]["status"] != "rejected" and res.dataset_dir is not None
    assert "broken.txt starts with a UTF-16 byte-order mark but is not valid UTF-16" in " ".join(by["broken"]["reasons"])
    assert "latin.txt is not UTF-8 text" in " ".join(by["latin"]["reasons"])


# ---- 5. non-finite numbers in a config ---------------------------------------------------------------
@pytest.mark.parametrize("key", ["generation.cfg_coef", "generation.temperature", "training.sample_seconds",
                                 "training.learning_rate"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_config_numbers_are_refused(key, value):
    from core.config import ConfigError, parse_config

    section, name = key.split(".")
    with pytest.raises(ConfigError) as err:
        parse_config({section: {name: value}})
    assert key in str(err.value)


# ---- 6. stopping a run signals only what the studio started ----------------------------------------
def test_stop_never_signals_the_users_shell_job(tmp_path):
    """A trainer started from a shell shares the shell job's process group: a forced stop from the studio
    kills the trainer (its own pid, start time checked) and leaves the job's other processes alone."""
    import subprocess
    import sys
    import time

    from core.runs import process
    from core.runs import store as runs
    from core.config import parse_config

    run = runs.create_run(parse_config({"workspace": str(tmp_path), "paths": {"base_model_path": "demo"}}))
    # the user's shell job: one group holding a sibling process and the "trainer"
    job = subprocess.Popen(["bash", "-c", "sleep 60 & echo $! ; exec sleep 61"], stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
    sibling = int(job.stdout.readline())
    trainer = job.pid
    try:
        assert os.getpgid(sibling) == os.getpgid(trainer)
        # what core.train records when it was not started by the studio
        runs.update_run_json(run, status="running", pid=trainer, pgid=None, launched_by="shell",
                             pid_start=process.process_start_time(trainer))
        runs.stop_run(run, wait=0.5, force=True)
        job.wait(timeout=20)
        time.sleep(0.2)
        assert process.pid_alive(sibling), "the shell job's other process was signalled"
        assert runs.read_run_json(run)["status"] == "stopped"
        # a reused pid (another start time) is never signalled either
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            runs.update_run_json(run, status="running", pid=other.pid, pgid=None, launched_by="shell",
                                 pid_start=(process.process_start_time(other.pid) or 0) + 999)
            runs.kill_run(run)
            time.sleep(0.3)
            assert other.poll() is None
        finally:
            other.kill()
            other.wait()
    finally:
        os.kill(sibling, 9)
        if job.poll() is None:
            job.kill()
