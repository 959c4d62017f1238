"""Space handling: demo mode on a public Space (train and push disabled, with how to duplicate),
training allowed with STUDIO_ALLOW_TRAINING=1, workspace under /data when persistent storage exists."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from studio.space import default_workspace, detect  # noqa: E402


def test_detect_rules(tmp_path):
    assert not detect({}).demo_mode and not detect({}).on_space
    pub = detect({"SPACE_ID": "someone/songgen-studio"})
    assert pub.on_space and pub.demo_mode
    assert pub.duplicate_url == "https://huggingface.co/spaces/someone/songgen-studio?duplicate=true"
    assert not detect({"SPACE_ID": "me/dup", "STUDIO_ALLOW_TRAINING": "1"}).demo_mode
    assert detect({"STUDIO_DEMO_MODE": "1"}).demo_mode  # forced anywhere
    assert not detect({"SPACE_ID": "x/y", "STUDIO_DEMO_MODE": "0"}).demo_mode


def test_workspace_choice(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    on = detect({"SPACE_ID": "a/b"}, data_root=data)
    assert on.persistent_data
    assert default_workspace(on, env={}, data_root=data) == data / "songgen-studio"
    assert default_workspace(on, env={"STUDIO_HOME": str(tmp_path / "h")}, data_root=data) == tmp_path / "h"
    assert default_workspace(on, flag=str(tmp_path / "f"), env={}, data_root=data) == tmp_path / "f"
    off = detect({"SPACE_ID": "a/b"}, data_root=tmp_path / "missing")
    assert default_workspace(off, env={}, data_root=tmp_path / "missing") == Path("workspace")
    assert default_workspace(detect({}), env={}) == Path("workspace")


def _component(config: dict, elem_id: str) -> dict:
    for c in config["components"]:
        if c.get("props", {}).get("elem_id") == elem_id:
            return c["props"]
    raise KeyError(elem_id)


@pytest.fixture()
def public_space(tmp_path, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/songgen-studio")
    monkeypatch.delenv("STUDIO_ALLOW_TRAINING", raising=False)
    monkeypatch.delenv("STUDIO_DEMO_MODE", raising=False)
    from studio.app import build_app
    demo = build_app(workspace=tmp_path)
    yield demo


def test_public_space_disables_train_and_push(public_space):
    cfg = public_space.get_config_file()
    for elem in ("btn-start", "btn-resume", "btn-push"):
        assert _component(cfg, elem)["interactive"] is False, elem
    text = json.dumps(cfg, default=str)
    assert "duplicate=true" in text and "STUDIO_ALLOW_TRAINING=1" in text
    assert _component(cfg, "train-locked")["value"].startswith("Disabled in this public demo Space")
    assert _component(cfg, "push-locked")["value"].startswith("Disabled in this public demo Space")


def test_public_space_refuses_training_through_the_api(public_space):
    """A disabled button is not enough: the handler refuses too (the API is reachable directly)."""
    from gradio_client import Client
    from tests.studio_server import serve
    url = serve(public_space)
    try:
        client = Client(url, verbose=False)
        with pytest.raises(Exception) as e:
            client.predict(training_max_steps=2, api_name="/start_run")
        assert "public demo Space" in str(e.value)
        with pytest.raises(Exception) as e:
            client.predict(None, 1.0, "me/x", True, True, False, False, "hf_not_a_real_token", api_name="/push")
        assert "public demo Space" in str(e.value)
        assert not (Path(public_space.studio_ctx.ws.root) / "runs").exists()
    finally:
        public_space.close()


def test_allowed_space_enables_training(tmp_path, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "me/my-duplicate")
    monkeypatch.setenv("STUDIO_ALLOW_TRAINING", "1")
    monkeypatch.delenv("STUDIO_DEMO_MODE", raising=False)
    from studio.app import build_app
    cfg = build_app(workspace=tmp_path).get_config_file()
    assert _component(cfg, "btn-start")["interactive"] is not False
    assert _component(cfg, "btn-push")["interactive"] is not False
