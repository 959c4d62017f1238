"""One error base (core.errors.StudioError): every refusal of core carries a code and its params, is still the
builtin its callers catch, and the studio words it by its code in the reader's language; a bug is shown as
an internal error with where its traceback went, never as the user's mistake."""
from __future__ import annotations

import importlib
import pickle

import pytest

# every module of core that defines an error class
ERROR_MODULES = ["core.config", "core.weights", "core.text.fields", "core.audio.io", "core.audio.separation",
                 "core.timing.sections", "core.model.official_config", "core.model.info", "core.data.limits",
                 "core.runs.lock", "core.preference.pairs", "core.training.optimizers", "core.training.safe_state",
                 "core.export.merge", "core.export.hub", "core.export.generate"]


def _core_errors() -> list[type]:
    from core.errors import StudioError
    for m in ERROR_MODULES:
        importlib.import_module(m)
    out, todo = [], [StudioError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo += cls.__subclasses__()
    return [c for c in out if c.__module__.startswith("core.")]


def test_every_core_error_has_a_code_worded_in_every_language():
    """Its own code, or (a refinement such as BaseModelError, whose field the Train tab words itself) the code
    of a parent below StudioError: never only the generic wording."""
    from core.errors import StudioError
    from studio.i18n import LANGS, TABLES
    classes = [c for c in _core_errors() if c is not StudioError]
    assert len(classes) >= 20
    for cls in classes:
        assert "code" in cls.__dict__, f"{cls.__module__}.{cls.__name__} has no code of its own"
        codes = [c.__dict__["code"] for c in cls.__mro__[:cls.__mro__.index(StudioError)] if "code" in c.__dict__]
        for lang in LANGS:
            assert any(f"err_{code}" in TABLES[lang] for code in codes), (cls.__name__, lang)


def test_the_errors_are_still_the_builtins_their_callers_catch():
    from core.config import ConfigError
    from core.errors import CheckpointError, StudioError
    from core.model import CheckpointError as ModelCheckpointError
    from core.runs.store import NotARun, RunError, RunNameError, RunNameTaken
    from core.training.safe_state import CheckpointError as StateCheckpointError, disk_full_error
    assert ModelCheckpointError is StateCheckpointError is CheckpointError  # one class, was two
    assert issubclass(CheckpointError, ValueError) and issubclass(CheckpointError, RuntimeError)
    assert issubclass(ConfigError, ValueError) and issubclass(RunError, RuntimeError)
    assert issubclass(NotARun, FileNotFoundError) and issubclass(RunNameError, ValueError)
    assert issubclass(RunNameTaken, FileExistsError)
    full = disk_full_error("/tmp/x.bin", OSError(28, "No space left on device"))
    assert isinstance(full, OSError) and isinstance(full, StudioError) and full.errno == 28
    assert full.code == "disk_full" and full.params["path"] == "/tmp/x.bin" and str(full).startswith("disk full")
    back = pickle.loads(pickle.dumps(full))
    assert (back.errno, back.code, back.params, str(back)) == (28, "disk_full", full.params, str(full))


def test_code_params_and_message_survive_pickling():
    from core.runs.lock import RunLocked
    from core.runs.store import RunError
    err = RunError("run a is running; stop it first", code="run_active", run="a", status="running")
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.code, back.params, str(back)) == (RunError, "run_active", err.params, str(err))
    locked = pickle.loads(pickle.dumps(RunLocked("/w/runs/a", {"pid": 7, "host": "h"})))
    assert locked.code == "run_locked" and locked.holder == {"pid": 7, "host": "h"} and "pid 7" in str(locked)


def test_core_refusals_are_coded_where_they_are_raised(tmp_path):
    from core.config import load_config
    from core.runs import store
    run = store.create_run(load_config(None, {"workspace": str(tmp_path)}), name="first")
    other = store.create_run(load_config(None, {"workspace": str(tmp_path)}), name="second")
    with pytest.raises(store.RunNameTaken) as taken:
        store.rename_run(run, other.name)
    assert taken.value.code == "run_name_taken" and taken.value.params == {"name": other.name}
    with pytest.raises(store.RunNameError) as empty:
        store.rename_run(run, "!!!")
    assert empty.value.code == "run_name"
    with pytest.raises(store.NotARun) as missing:
        store.delete_run(tmp_path / "nothing")
    assert missing.value.code == "not_a_run" and missing.value.params == {"run": "nothing"}


def test_the_studio_words_a_core_error_by_its_code():
    from core.export.merge import ExportError
    from core.runs.store import RunError
    from studio.feedback import message, refusal
    busy = RunError("run a is running; stop it before you delete it", code="run_active_delete", run="a",
                    status="running")
    assert refusal(busy).key == "err_run_active_delete"
    assert message(busy, "en") == "Run a is running: stop it before you delete it."
    assert message(busy, "zh").startswith("运行 a 正在") and "请先停止再删除" in message(busy, "zh")
    # no wording of its own: the class's code frames core's English message
    odd = ExportError("adapter_model.safetensors is missing", code="no_such_code")
    assert refusal(odd).key == "err_export"
    assert message(odd, "zh") == "导出失败：adapter_model.safetensors is missing"
    assert message(odd, "en") == "adapter_model.safetensors is missing"


def test_a_missing_hub_token_is_worded_in_chinese(monkeypatch, tmp_path):
    from core.export.hub import HubError, resolve_token
    from studio.feedback import message
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # no saved login
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "token"))
    with pytest.raises(HubError) as err:
        resolve_token(None)
    assert err.value.code == "hub_no_token" and "no Hugging Face token" in str(err.value)
    assert message(err.value, "zh").startswith("没有 Hugging Face 令牌") and "HF_TOKEN" in message(err.value, "zh")


def test_a_config_that_failed_validation_is_worded_field_by_field():
    from core.config import ConfigError, load_config
    from studio.feedback import message
    with pytest.raises(ConfigError) as err:
        load_config(None, {"training.learning_rate": -1})
    assert message(err.value, "zh") == "部分设置无效：\n- “学习率” 必须大于 0.0（当前为 -1）。"
    assert message(err.value, "en") == "Some settings are not valid:\n- “Learning rate” must be greater than 0.0 (now -1)."


def _one_event_app(fn, lang="en", **soften):
    import gradio as gr
    from studio import feedback
    with gr.Blocks() as demo:
        out = gr.Textbox()
        gr.Button().click(fn, None, out)
    feedback.soften(demo, lang, **soften)
    return next(iter(demo.fns.values())).fn


def test_a_bug_is_an_internal_error_with_its_traceback_in_the_log(tmp_path):
    import gradio as gr

    def broken():
        return {}["missing"]

    log = tmp_path / "logs" / "studio-errors.log"
    run = _one_event_app(broken, "zh", log_file=log)
    with pytest.raises(gr.Error) as err:  # request and event None: as the HTTP API calls it
        run(None, None)
    text = err.value.message
    assert text.startswith("内部错误（KeyError）") and str(log) in text and "不是你的操作有误" in text
    incident = text.split("事件编号 ")[1][:8]
    logged = log.read_text(encoding="utf-8")
    assert f"incident {incident}" in logged and "Traceback" in logged and "KeyError: 'missing'" in logged
    # a public Space names no server path
    run = _one_event_app(broken, "en", log_file=log, show_where=False)
    with pytest.raises(gr.Error) as err:
        run(None, None)
    assert "Internal error (KeyError)" in err.value.message and "the server log" in err.value.message
    assert str(log) not in err.value.message


def test_a_core_refusal_raised_in_an_event_is_worded_not_an_internal_error(tmp_path):
    import gradio as gr
    from core.runs.store import RunNameTaken

    def rename():
        raise RunNameTaken("a run named b already exists; choose another name", name="b")

    run = _one_event_app(rename, "zh", log_file=tmp_path / "errors.log")
    with pytest.raises(gr.Error) as err:
        run(None, None)
    assert err.value.message == "已有名为 b 的运行：请换一个名称。"
    assert not (tmp_path / "errors.log").exists()  # a refusal is not a bug: nothing logged
