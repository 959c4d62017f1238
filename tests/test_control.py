"""core.training.control: what the loop does after a step, decided in one place (no model, no accelerate)."""
from __future__ import annotations

from types import SimpleNamespace

from core.runs import store as runs
from core.training.control import StepControl
from tests.test_train import base_config, env, events, in_process  # noqa: F401  (env: the demo model and songs)

NO_FLAGS = {"stop": False, "save": False, "sample": False}


def _control(tmp_path, total=20, **tc):
    fields = dict(log_every=5, eval_every=4, save_every=6, sample_every=0, early_stopping_patience=0,
                  early_stopping_min_delta=0.0)
    fields.update(tc)
    ctl = StepControl(SimpleNamespace(**fields), tmp_path, is_main=True, share=lambda values: values)
    ctl.total_steps = total
    return ctl


def test_schedule_points_are_inside_the_run(tmp_path):
    ctl = _control(tmp_path, total=12)
    assert [s for s in range(1, 13) if ctl.evaluate_now(s)] == [4, 8]  # 12 is the end: its own evaluation
    assert [ctl.decide(s, NO_FLAGS, None).save for s in (6, 12)] == ["save_every", None]
    assert [s for s in range(1, 13) if ctl.log_now(s)] == [5, 10, 12]
    assert all(ctl.decide(s, NO_FLAGS, None).sample is None for s in range(1, 13))  # sample_every 0: never


def test_best_is_saved_once_and_early_stopping_counts_evaluations(tmp_path):
    ctl = _control(tmp_path, early_stopping_patience=2, early_stopping_min_delta=0.1)
    first = ctl.decide(4, NO_FLAGS, 2.0)
    assert first.save_best and not first.early_stop and ctl.val_at(4) == 2.0 and ctl.val_at(5) is None
    # a periodic save at a step just saved as the best is not written twice
    d = ctl.decide(6, NO_FLAGS, 1.5)
    assert d.save_best and d.save is None
    # better, but by less than min_delta: a new best that still counts against patience
    d = ctl.decide(8, NO_FLAGS, 1.45)
    assert d.save_best and not d.early_stop and ctl.bad_evals == 1
    d = ctl.decide(12, NO_FLAGS, 1.9)
    assert not d.save_best and d.early_stop and ctl.bad_evals == 2 and ctl.best_val == 1.45
    assert not ctl.decide(13, NO_FLAGS, None).early_stop  # no evaluation at this step: nothing to judge


def test_flags_stop_save_sample(tmp_path):
    ctl = _control(tmp_path, sample_every=3)
    assert ctl.decide(3, NO_FLAGS, None).sample == "sample_every"
    d = ctl.decide(4, {"stop": False, "save": True, "sample": True}, 1.0)
    assert d.save_best and d.save == "save-now" and d.save_is_best and d.sample == "sample-now"
    d = ctl.decide(5, {"stop": True, "save": True, "sample": True}, None)
    assert d.stop and d.save is None and d.sample is None  # stop saves its own checkpoint and ends the loop


def test_flag_files_are_read_once_and_stop_stays(tmp_path):
    ctl = _control(tmp_path)
    assert ctl.read_flags() == NO_FLAGS
    runs.set_flag(tmp_path, "save")
    runs.set_flag(tmp_path, "stop")
    assert ctl.read_flags() == {"stop": True, "save": True, "sample": False}
    assert ctl.read_flags() == {"stop": True, "save": False, "sample": False}  # save consumed, stop kept
    other = _control(tmp_path)
    other.is_main = False  # only the main process reads the files; the others learn through `share`
    runs.clear_flags(tmp_path)
    other.signal_stop = True
    assert other.read_flags()["stop"]


def test_early_stopping_ends_a_real_run_as_done(env):  # noqa: F811  (the session fixture of test_train)
    """Patience 1 with an improvement nobody reaches: the second evaluation stops the run, which then ends
    as a finished one ("done", a last checkpoint at the stopping step); the lowest validation loss is the best.
    The stopping step was evaluated by the loop: it is not evaluated again, and when it is the best its
    checkpoint keeps the reason "best" (an "end" save used to overwrite it while run.json pointed at it as best)."""
    from core.training.checkpoints import list_checkpoints

    data = base_config(env["ws"], env["ckpt"], dataset_dir=str(env["dataset"]), max_steps=12, eval_every=1,
                       save_every=100, early_stopping_patience=1, early_stopping_min_delta=100.0)
    run = in_process(data, "early")
    stop = events(run, "early_stop")
    assert [e["step"] for e in stop] == [2] and stop[0]["evaluations"] == 1
    assert [e["step"] for e in events(run, "done")] == [2]
    val = {e["step"]: e["val_loss"] for e in events(run, "eval")}
    assert [e["step"] for e in events(run, "eval")] == [1, 2]  # one evaluation a step
    last_is_best = min(val, key=val.get) == 2
    assert [(c["step"], c["reason"]) for c in list_checkpoints(run)][-1] == (2, "best" if last_is_best else "end")
    info = runs.read_run_json(run)
    assert sorted(val) == [1, 2] and info["status"] == "done" and info["step"] == 2
    assert info["best"]["val_loss"] == min(val.values()) and stop[0]["best_val_loss"] == min(val.values())
