"""What the Train and Export views decide, without a browser (tests/test_browser_views.py walks them in
Chromium): the plot's update for an SFT and a DPO run, Save now / Sample now refused on a finished run
with the flag left unwritten, a refusal shown in place for the page and raised for the HTTP API, and a
"next run" command whose config file exists."""
from __future__ import annotations

import pytest

from core.config import load_config
from core.runs import store as runs


def test_plot_axis_follows_the_run_kind_and_length():
    from studio.tabs.train import _plot_value
    sft = _plot_value([(1, 9.7, "loss (raw)"), (2, 9.6, "loss (raw)")], "en", total=200)
    assert sft["y_title"] == "loss" and sft["x_lim"] == [0, 200]
    dpo = _plot_value([(1, 0.69, "loss (raw)"), (1, 0.0, "reward_margin (smoothed)")], "zh", total=3, dpo=True)
    assert dpo["y_title"] == "DPO 损失 · 奖励差 · 准确率"
    assert dpo["x_lim"] == [0, 20]  # a short run: at least 20 steps wide, so the ticks fall on whole steps
    done = _plot_value([(1, 9.7, "loss (raw)")], "en", total=200, final=True)
    assert done["x_lim"] != sft["x_lim"] and abs(done["x_lim"][1] - 200) < 1e-3  # the page rebuilds, unseen
    assert _plot_value([], "en") is None  # no rows: the placeholder, never a spec built from an empty frame


def test_save_and_sample_now_refused_on_a_finished_run(tmp_path):
    from studio import backend
    from studio.feedback import UserError
    run = runs.create_run(load_config(None, {"workspace": str(tmp_path)}), name="old")
    runs.update_run_json(run, status="done")
    for send, flag, word in ((backend.request_save, "save", "Save now"), (backend.request_sample, "sample", "Sample now")):
        with pytest.raises(UserError) as e:
            send(str(run))
        assert e.value.text("en").startswith(f"{word} refused: {run.name} is done")
        assert run.name in e.value.text("zh") and "已拒绝" in e.value.text("zh")
        assert not runs.flag_path(run, flag).exists()


def test_refusal_in_place_for_the_page_raised_for_the_api():
    from studio import feedback
    err = feedback.UserError("err_run_not_running_save", run="r1", status="done")
    with pytest.raises(feedback.UserError):  # outside a page event (the HTTP API, a script): still an exception
        feedback.in_place(err, "en")
    token = feedback._IN_PLACE.set([])  # what soften's wrapper sets for an event that shows refusals in place
    try:
        assert feedback.in_place(err, "en").startswith("⚠ Save now refused: r1 is done")
    finally:
        feedback._IN_PLACE.reset(token)


def test_next_run_command_names_a_config_that_exists(tmp_path):
    from studio import backend
    from studio.state import Workspace
    ws = Workspace(tmp_path / "ws")
    cfg = load_config(None, {"workspace": str(ws.root)})
    yaml_text, cmd = backend.preview(ws, cfg)
    path = ws.root / "configs" / "next" / runs.CONFIG_NAME
    assert str(path) in cmd and path.read_text(encoding="utf-8") == yaml_text
