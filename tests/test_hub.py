"""Push end to end against a loopback fake Hub (tests/fake_hub.py, HF_ENDPOINT pointed at it): uploaded files,
the card's metadata, private by default, errors in words, and the token never written or logged."""
from __future__ import annotations

import io
import json
import logging
import os
import secrets
import socket
from pathlib import Path

import pytest

from tests.fake_hub import FakeHub
from tests.test_export import CKPT, FIXTURE, make_adapter
from tests.test_generate import LYRICS, make_dataset

pytestmark = pytest.mark.skipif(not (CKPT / "model.pt").is_file(), reason="tiny fixture not available")

TOKEN = "hf_" + secrets.token_hex(17)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A run with a LoRA checkpoint, a merged export, an A/B folder and a prepared dataset, all in one workspace."""
    from core.config import load_config
    from core.export.merge import export_checkpoint
    from core.export.compare import ab_compare

    ws = tmp_path_factory.mktemp("hubws") / "ws"
    run = ws / "runs" / "r1"
    ds = make_dataset(ws / "prepared" / "ds1")
    cfg = load_config(None, {"workspace": str(ws), "paths.base_model_path": str(CKPT), "paths.runtime_path": str(FIXTURE),
                             "data.codec": "demo", "generation.lyrics": LYRICS, "generation.description": "pop",
                             "training.dataset_dir": str(ds), "training.max_steps": 40})
    cfg.save(run / "config.yaml")
    adapter = make_adapter(run / "checkpoints" / "step-40", seed=4)
    merged = Path(export_checkpoint(adapter, cfg=cfg).out_dir)
    ab = Path(ab_compare(cfg, str(adapter), out_dir=ws / "generations" / "ab").out_dir)
    return cfg, ws, adapter, merged, ab, ds


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    fake = FakeHub(TOKEN)
    url = fake.start()
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no real login is read or written
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # Other test modules set HF_HUB_OFFLINE=1 at import; huggingface_hub freezes it at its own import. The fake
    # Hub is loopback only, so online mode is safe for these tests.
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # Large files (the dataset's parquet shards) go through LFS here; the fake Hub speaks LFS, not Xet.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    yield fake
    fake.stop()


def scan_for_token(*roots: Path) -> list[str]:
    hits = []
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and TOKEN.encode() in p.read_bytes():
                hits.append(str(p))
    return hits


def test_push_end_to_end(made, hub, caplog, capsys, tmp_path):
    from huggingface_hub import DatasetCard, ModelCard

    from core.export.hub import UPSTREAM_LICENSE, push

    cfg, ws, adapter, merged, ab, ds = made
    caplog.set_level(logging.DEBUG)
    messages = []
    res = push(cfg, repo_id="songgen-test", adapter_dir=adapter, merged_dir=merged, samples_dir=ab,
               push_dataset=True, token=TOKEN, log=messages.append)
    assert res.repo_id == "alice/songgen-test" and res.private and res.token_source == "argument"
    repo = hub.repos[("model", "alice/songgen-test")]
    assert repo["private"] is True  # private by default
    files = hub.files("alice/songgen-test")
    expected = {"README.md", "training_config.yaml", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
                "merged/config.yaml", "merged/model.pt", "samples/A_base_seed0.wav", "samples/B_step-40_seed0.wav"}
    assert set(files) == expected
    assert files["adapter/adapter_model.safetensors"] == (adapter / "adapter_model.safetensors").read_bytes()
    assert files["merged/model.pt"] == (merged / "model.pt").read_bytes()
    assert files["samples/B_step-40_seed0.wav"] == (ab / "B_step-40_seed0.wav").read_bytes()
    for name in ("training_config.yaml", "README.md"):  # no local paths go to the Hub
        assert str(ws).encode() not in files[name] and str(CKPT.parent).encode() not in files[name]
    # the card: metadata and body
    card = ModelCard(files["README.md"].decode())
    d = card.data.to_dict()
    assert d["license"] == "other" and d["license_link"] == UPSTREAM_LICENSE and d["pipeline_tag"] == "text-to-audio"
    assert "lora" in d["tags"] and d["datasets"] == ["alice/songgen-test-data"]
    man = json.loads((ab / "manifest.json").read_text())
    before, after = man["items"][0]["val_loss"], man["items"][1]["val_loss"]
    assert d["songgen_studio"]["val_loss_before"] == pytest.approx(before)
    assert d["songgen_studio"]["val_loss_after"] == pytest.approx(after)
    assert d["songgen_studio"]["training_type"] == "lora"
    assert f"{before:.4f}" in card.text and f"{after:.4f}" in card.text
    assert f'<audio controls src="{hub.url}/alice/songgen-test/resolve/main/samples/A_base_seed0.wav">' in card.text
    assert "academic, research and education" in card.text and "| learning_rate |" in card.text
    # the dataset cache, in its own private dataset repo
    dfiles = hub.files("alice/songgen-test-data", "dataset")
    assert hub.repos[("dataset", "alice/songgen-test-data")]["private"] is True
    assert "README.md" in dfiles and "dataset_dict.json" not in dfiles
    shards = sorted(k for k in dfiles if k.startswith("data/"))
    assert [k.split("/")[1].split("-")[0] for k in shards] == ["train", "validation"]
    assert all(k.endswith(".parquet") for k in shards) and res.dataset_files == sorted(dfiles)
    ds_card = DatasetCard(dfiles["README.md"].decode())
    assert "songgen-studio" in ds_card.data.tags and "Tokenized songs" in ds_card.text
    assert {c["config_name"] for c in ds_card.data.to_dict()["configs"]} == {"default"}
    # what the Hub holds loads with `datasets.load_dataset` (read back locally from the fake Hub's storage)
    from datasets import load_dataset, load_from_disk

    local = tmp_path / "pulled"
    for name, data in dfiles.items():
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(data)
    pulled, saved = load_dataset(str(local)), load_from_disk(str(ds))
    assert set(pulled) == set(saved) == {"train", "validation"}
    for split in saved:
        assert pulled[split].to_list() == saved[split].to_list()
    # every request was authenticated, and the token went nowhere else
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in hub.requests)
    out = capsys.readouterr()
    assert TOKEN not in caplog.text and TOKEN not in out.out + out.err and TOKEN not in "\n".join(messages)
    assert scan_for_token(ws, Path(os.environ["HF_HOME"])) == []


def test_token_sources_update_and_clash(made, hub, monkeypatch):
    from core.export.hub import HubError, push

    cfg, ws, adapter, merged, ab, ds = made
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    res = push(cfg, repo_id="alice/lora-only", adapter_dir=adapter)
    assert res.token_source.startswith("environment") and set(hub.files("alice/lora-only")) == {
        "README.md", "training_config.yaml", "adapter/adapter_config.json", "adapter/adapter_model.safetensors"}
    with pytest.raises(HubError, match="already exists") as e:  # a name clash (409) is an error unless --update
        push(cfg, repo_id="alice/lora-only", adapter_dir=adapter)
    assert TOKEN not in str(e.value)
    res = push(cfg, repo_id="alice/lora-only", adapter_dir=adapter, merged_dir=merged, update=True)
    assert "merged/model.pt" in hub.files("alice/lora-only") and len(hub.commits) == 2
    hub.add_repo("bob/taken", owner="bob")
    with pytest.raises(HubError, match="not yours"):
        push(cfg, repo_id="bob/taken", adapter_dir=adapter)
    res = push(cfg, repo_id="alice-lab/team-model", adapter_dir=adapter, private=False)
    assert hub.repos[("model", "alice-lab/team-model")]["private"] is False


def test_the_card_only_carries_what_the_pushed_checkpoint_made(made, hub):
    """An A/B made from step-40 is not put on the card of step-20 (the studio attaches the newest generation
    folder): no samples, no losses; pushing step-40's merged export keeps them (export.json names step-40)."""
    from huggingface_hub import ModelCard

    from core.export.hub import push

    cfg, ws, adapter, merged, ab, ds = made
    other = make_adapter(adapter.parent / "step-20", seed=5)
    messages = []
    push(cfg, repo_id="alice/step-20", adapter_dir=other, samples_dir=ab, token=TOKEN, log=messages.append)
    files = hub.files("alice/step-20")
    assert not [f for f in files if f.startswith("samples/")]
    meta = ModelCard(files["README.md"].decode()).data.to_dict()["songgen_studio"]
    assert meta["val_loss_before"] is None and meta["val_loss_after"] is None
    assert any("not on the card" in m and "step-40" in m for m in messages), messages
    push(cfg, repo_id="alice/step-40-merged", merged_dir=merged, samples_dir=ab, token=TOKEN)
    files = hub.files("alice/step-40-merged")
    assert {"samples/A_base_seed0.wav", "samples/B_step-40_seed0.wav"} <= set(files)
    meta = ModelCard(files["README.md"].decode()).data.to_dict()["songgen_studio"]
    assert meta["val_loss_after"] is not None


def test_errors_in_words(made, hub, monkeypatch):
    from core.export.hub import HubError, push

    cfg, ws, adapter, merged, ab, ds = made
    bad = "hf_" + secrets.token_hex(17)
    with pytest.raises(HubError, match="refused \\(401\\)") as e:
        push(cfg, repo_id="alice/x", adapter_dir=adapter, token=bad)
    assert bad not in str(e.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="offline"):
        push(cfg, repo_id="alice/x", adapter_dir=adapter, token=TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(HubError, match="cannot reach the Hub"):
        push(cfg, repo_id="alice/x", adapter_dir=adapter, token=TOKEN)
    with pytest.raises(HubError, match="no Hugging Face token"):
        push(cfg, repo_id="alice/x", adapter_dir=adapter)
    with pytest.raises(HubError, match="not a LoRA checkpoint"):
        push(cfg, repo_id="alice/x", adapter_dir=ws, token=TOKEN)
    assert ("model", "alice/x") not in hub.repos


def test_cli_push_token_from_stdin(made, hub, monkeypatch, capsys):
    from core.cli import main

    cfg, ws, adapter, merged, ab, ds = made
    path = cfg.save(ws / "push.yaml")
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    rc = main(["push", "--config", str(path), "--repo-id", "alice/cli-model", "--merged", str(merged),
               "--token-stdin", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert json.loads(out.out)["private"] is True and "merged/model.pt" in hub.files("alice/cli-model")
    assert TOKEN not in out.out + out.err
    monkeypatch.setattr("sys.stdin", io.StringIO("hf_wrongwrongwrong\n"))
    assert main(["push", "--config", str(path), "--repo-id", "alice/cli-2", "--merged", str(merged),
                 "--token-stdin"]) == 1
    err = capsys.readouterr().err
    assert "401" in err and "hf_wrongwrongwrong" not in err
    assert scan_for_token(ws) == []
