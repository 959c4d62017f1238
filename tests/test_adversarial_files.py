"""Untrusted files, as an attacker would hand them over (issue 25): a downloaded dataset folder, a
metadata.jsonl, a shared model folder's config.yaml, a hostile pairs file or checkpoint manifest.

- a data folder's links to files outside it are refused with a reason and never read: no report,
  manifest or dataset holds a byte of what they point at; the same for an `lrc` path in metadata.jsonl;
- an LRC that fails to parse is never quoted; push --dataset publishes only the dataset and a report
  without paths or file text;
- config.yaml: `${load_yaml:...}` only inside the runtime root, `${eval:...}` bounded;
- deep nesting, 1e400 and 2**80 reject one line or one checkpoint, never the whole import or resume;
- a trainer starts without the server's secrets; a full disk while writing samples ends the run failed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.datagen import GOOD_LYRICS, write_song  # noqa: E402
from tests.test_adversarial import SECRET, _clone_run, _tree_contains, trained  # noqa: E402,F401


@pytest.fixture()
def outside(tmp_path) -> Path:
    """Files a stranger's dataset would like to read: a fake token, an 'environment', a wav."""
    out = tmp_path / "home"
    (out / ".cache" / "huggingface").mkdir(parents=True)
    (out / ".cache" / "huggingface" / "token").write_text(SECRET + "\n")
    (out / "environ").write_text(f"PATH=/usr/bin\nHF_TOKEN={SECRET}\n")
    write_song(out / "private.wav", seconds=3.0, seed=9)
    return out


def _prepare(trained, tmp_path, **paths):
    from core.config import parse_config
    from core.data import prepare

    cfg = parse_config({"workspace": str(trained["ws"]), "paths": {"base_model_path": str(trained["ckpt"]), **paths},
                        "data": {"codec": "demo", "val_fraction": 0.0, "min_duration_s": 1.0, "prompt_offset_s": 0.0}})
    res = prepare(cfg)
    return res, {e["idx"]: e for e in res.report}


def test_a_data_folder_reads_nothing_through_links_leaving_it(trained, tmp_path, outside):
    folder = tmp_path / "dataset"
    folder.mkdir()
    write_song(folder / "good.wav", seconds=3.0, seed=1)
    (folder / "good.txt").write_text(GOOD_LYRICS, encoding="utf-8")
    write_song(folder / "s7.wav", seconds=3.0, seed=2)
    (folder / "s7.txt").write_text(GOOD_LYRICS, encoding="utf-8")
    (folder / "s7.desc.txt").symlink_to(outside / "environ")          # the description
    (folder / "s8.wav").symlink_to(outside / "private.wav")            # the audio
    (folder / "s8.txt").write_text(GOOD_LYRICS, encoding="utf-8")
    write_song(folder / "s9.wav", seconds=3.0, seed=3)
    (folder / "s9.lrc").symlink_to(outside / ".cache/huggingface/token")  # timed lyrics
    write_song(folder / "s10.wav", seconds=3.0, seed=4)
    (folder / "s10.txt").write_text(GOOD_LYRICS, encoding="utf-8")
    (folder / "s10.vocal.wav").symlink_to(outside / "private.wav")    # a stem
    (folder / "inner").mkdir()
    write_song(folder / "inner" / "ok.wav", seconds=3.0, seed=5)
    (folder / "inner" / "ok.txt").symlink_to(folder / "good.txt")      # a link that stays inside is fine

    res, by = _prepare(trained, tmp_path, raw_data_dir=str(folder))
    assert res.dataset_dir is not None
    assert {i for i, e in by.items() if e["status"] != "rejected"} == {"good", "ok"}, by
    for idx, name in (("s7", "s7.desc.txt"), ("s8", "s8.wav"), ("s9", "s9.lrc"), ("s10", "s10.vocal.wav")):
        why = " | ".join(by[idx]["reasons"])
        assert f"{name} is a link to a file outside {folder.resolve()}" in why, why
        assert "not followed" in why
    # not one byte of what the links point at, in the dataset, its manifest and report, or anywhere else
    assert _tree_contains(trained["ws"], SECRET.encode()) == []

    # push --dataset: the dataset and a report with no paths, sources or text read from files
    from core.export import hub

    dd, side = hub._dataset_for_push(res.dataset_dir)
    assert [dest for _, dest in side] == ["report.json"]
    published = json.loads(side[0][0])
    assert {k for e in published["songs"] for k in e} <= set(hub.PUBLIC_REPORT_KEYS)
    assert str(folder) not in side[0][0].decode() and SECRET not in side[0][0].decode()
    assert {e["idx"] for e in published["songs"]} == set(by)


def test_metadata_reads_files_only_inside_its_folder_and_never_quotes_a_broken_lrc(trained, tmp_path, outside):
    folder = tmp_path / "meta"
    folder.mkdir()
    wav = {n: write_song(folder / f"{n}.wav", seconds=3.0, seed=i) for i, n in enumerate(["a", "b", "c", "d", "e"])}
    (folder / "bad.lrc").write_text(f"{SECRET}\n[not a section] {SECRET}\n", encoding="utf-8")
    rows = [{"idx": "a", "path": str(wav["a"]), "gt_lyric": GOOD_LYRICS},
            {"idx": "b", "path": "b.wav", "lrc": str(outside / ".cache/huggingface/token")},
            {"idx": "c", "path": "c.wav", "lrc": "../home/.cache/huggingface/token"},
            {"idx": "d", "path": "d.wav", "gt_lyric": GOOD_LYRICS, "lrc": "bad.lrc"},
            {"idx": "e", "path": str(outside / "private.wav"), "gt_lyric": GOOD_LYRICS}]
    meta = folder / "metadata.jsonl"
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows) + "[" * 100_000 + "\n", encoding="utf-8")
    res, by = _prepare(trained, tmp_path, metadata_path=str(meta))
    assert by["a"]["status"] != "rejected" and res.dataset_dir is not None
    assert "is outside" in " ".join(by["b"]["reasons"]) and "LRC file" in " ".join(by["b"]["reasons"])
    assert "is outside" in " ".join(by["c"]["reasons"])
    assert "is outside" in " ".join(by["e"]["reasons"]) and "audio file" in " ".join(by["e"]["reasons"])
    assert by["d"]["status"] == "rejected" and "line 1 has no time tag" in json.dumps(by["d"])
    assert "nested too deeply" in " ".join(by["line-6"]["reasons"])  # the 100k-deep line: that line only
    assert _tree_contains(trained["ws"], SECRET.encode()) == []


def _config_with(tmp_path, ckpt: Path, line: str) -> Path:
    """A copy of the small demo model's runtime whose config.yaml has `line` added at the top level."""
    import shutil

    root = tmp_path / "model"
    shutil.copytree(ckpt.parent.parent, root)
    cfg = root / "ckpt" / ckpt.name / "config.yaml"
    cfg.write_text(cfg.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    return cfg


@pytest.mark.parametrize("line,why", [
    ("stolen: ${load_yaml:/etc/passwd}", "only files inside the runtime root"),
    ("stolen: ${load_yaml:../../../../../../etc/passwd}", "only files inside the runtime root"),
    ("huge: ${eval:'((9**64)**64)**64'}", "exponent too large"),
    ("huge: ${eval:3**39*3**39*3**39}", "a value passes"),
    ("long: ${eval:" + "+".join(["1"] * 400) + "}", "at most 200 are allowed"),
])
def test_a_model_config_reads_nothing_outside_its_runtime_and_computes_little(trained, tmp_path, line, why):
    from core.model.official_config import CheckpointError, read_official_config

    cfg = _config_with(tmp_path, trained["ckpt"], line)
    with pytest.raises(CheckpointError) as err:
        read_official_config(cfg, runtime_root=cfg.parent.parent.parent)
    assert why in str(err.value) and "root:x:0:0" not in str(err.value)
    # the model's own load_yaml and eval still resolve
    assert read_official_config(trained["ckpt"] / "config.yaml", runtime_root=trained["ckpt"].parent.parent).max_dur > 0


def test_a_link_in_the_model_folder_reads_nothing_outside_but_a_linked_runtime_conf_works(trained, tmp_path):
    """A shared model folder may hold a link to /etc/passwd; the runtime's own folders (a checkout whose conf/ is
    linked elsewhere, as users do) may be links."""
    import shutil

    from core.model.official_config import CheckpointError, read_official_config

    cfg = _config_with(tmp_path, trained["ckpt"], "stolen: ${load_yaml:ckpt/%s/notes.yaml}" % trained["ckpt"].name)
    (cfg.parent / "notes.yaml").symlink_to("/etc/passwd")
    with pytest.raises(CheckpointError) as err:
        read_official_config(cfg, runtime_root=cfg.parent.parent.parent)
    assert "leads out of it" in str(err.value) and "root:x:0:0" not in str(err.value)

    linked = tmp_path / "linked"
    (linked / "ckpt").mkdir(parents=True)
    shutil.copytree(trained["ckpt"], linked / "ckpt" / trained["ckpt"].name)
    for part in ("conf", "third_party"):
        (linked / part).symlink_to(trained["ckpt"].parent.parent / part)
    oc = read_official_config(linked / "ckpt" / trained["ckpt"].name / "config.yaml", runtime_root=linked)
    assert oc.structure_tags and oc.max_dur > 0


def test_hostile_numbers_and_nesting_reject_one_pair_line(tmp_path):
    from core.preference.pairs import PairStore

    good = {"prompt_id": "p1", "lyrics": GOOD_LYRICS, "description": "pop", "chosen": [[1, 2, 3]] * 3,
            "rejected": [[4, 5, 6]] * 3, "chosen_seed": 1, "rejected_seed": 2}
    lines = [json.dumps(good), json.dumps({**good, "prompt_id": "p2", "chosen_seed": 2**80}),
             '{"prompt_id": "p3", "chosen_seed": 1e400}', "[" * 100_000, json.dumps({**good, "prompt_id": "p4"})]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rep = PairStore(tmp_path / "store").import_jsonl(path)
    assert len(rep.added) == 2, rep.skipped
    text = "\n".join(rep.skipped)
    assert "line 2: " in text and "does not fit a 64-bit integer" in text
    assert "line 3: " in text and "line 4: not valid JSON (nested too deeply)" in text


@pytest.mark.parametrize("manifest", ["[" * 100_000, "SIZE"], ids=["deep", "1e400"])
def test_a_hostile_manifest_falls_back_to_the_previous_checkpoint(trained, capsys, manifest):
    from core.runs import store as runs
    from core.training.trainer import train

    run = _clone_run(trained["run"], f"manifest-{manifest[:4]}")
    mpath = run / "checkpoints/step-4/manifest.json"
    if manifest == "SIZE":
        doc = json.loads(mpath.read_text())
        first = sorted(doc["files"])[0]
        text = json.dumps(doc).replace(json.dumps(doc["files"][first]),
                                       json.dumps(doc["files"][first]).replace(
                                           f'"size": {doc["files"][first]["size"]}', '"size": 1e400'))
        assert "1e400" in text
        mpath.write_text(text)
    else:
        mpath.write_text(manifest)
    assert train(runs.load_run_config(run), resume="latest", config_path=run / runs.CONFIG_NAME) == "done"
    assert "resuming from step-2, the newest intact checkpoint: skipped step-4" in capsys.readouterr().out


def test_a_trainer_starts_without_the_servers_secrets():
    from core.runs.store import trainer_env

    server = {"PATH": "/usr/bin", "HOME": "/home/u", "HF_TOKEN": SECRET, "HUGGING_FACE_HUB_TOKEN": SECRET,
              "OAUTH_CLIENT_SECRET": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET, "STUDIO_HOME": "/data/ws",
              "CUDA_VISIBLE_DEVICES": "0", "SONGGEN_STUDIO_CACHE": "/c", "STUDIO_API_TOKEN": SECRET, "RANDOM": "x",
              "GOMP_SPINCOUNT": "3000"}
    env = trainer_env({"EXTRA": "1"}, base=server)
    assert SECRET not in json.dumps(env)
    assert env == {"PATH": "/usr/bin", "HOME": "/home/u", "STUDIO_HOME": "/data/ws", "CUDA_VISIBLE_DEVICES": "0",
                   "SONGGEN_STUDIO_CACHE": "/c", "GOMP_SPINCOUNT": "3000", "EXTRA": "1"}


def test_a_full_disk_while_writing_step_0_samples_ends_the_run_failed(trained, monkeypatch):
    import errno

    from core.fsutil import atomic_write_bytes
    from core.runs import store as runs
    from core.training import safe_state as cio
    from core.training import samples
    from core.training.trainer import train

    cfg = runs.load_run_config(trained["run"])
    cfg.training.num_samples, cfg.training.max_steps, cfg.paths.output_dir = 1, 2, None
    run = runs.create_run(cfg, name="samples-full")

    def full(path, data):
        if Path(path).suffix == ".wav":
            raise OSError(errno.ENOSPC, "No space left on device")
        return atomic_write_bytes(path, data)

    monkeypatch.setattr(samples, "atomic_write_bytes", full)
    with pytest.raises(cio.DiskFullError):
        train(runs.load_run_config(run), config_path=run / runs.CONFIG_NAME)
    info = runs.read_run_json(run)
    assert info["status"] == "failed"
    assert info["error"].startswith("disk full while writing") and "step-0_0.wav" in info["error"]
