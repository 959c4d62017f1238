"""One base for every error core refuses with: a stable `code`, its `params`, and an English message.

The CLI and the logs print the English message. A UI translates by code (its locale file has one entry
per code, worded with the params), never by reading the English text. Each error class has a default
code naming its kind ("config", "checkpoint", ...); a raise may give a finer one (`code="base_model"`)
with the values the wording needs. A UI without a wording for a finer code falls back to the class's
code, which shows the English message inside a translated frame.

The classes also derive from the builtin their callers catch (ValueError, RuntimeError, OSError), so
`except ValueError` written before this base existed still works.
"""
from __future__ import annotations

from typing import Any


def _rebuild(cls: type, state: dict) -> "StudioError":
    err = cls.__new__(cls)
    Exception.__init__(err, state["message"])
    err.__dict__.update(state)
    return err


class StudioError(Exception):
    """A refusal core words for the user: `code` (stable, for translations), `params` (values of the
    wording), `message` (English). Never a bug: a bug is any other exception."""

    code: str = "error"

    def __init__(self, message: str = "", *, code: str | None = None, **params: Any):
        self.code = code or type(self).code
        self.params = params
        self.message = message or ", ".join(f"{k}={v}" for k, v in params.items()) or self.code
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # pickled across processes: keyword arguments survive
        return _rebuild, (type(self), dict(self.__dict__))


class CheckpointError(StudioError, ValueError, RuntimeError):
    """A checkpoint folder that cannot be used as it is (a base model, a finetuned checkpoint, a training
    state that is incomplete, altered or holds files we refuse to load); the message says what to do.
    One class for the model's and the trainer's checkpoints: ValueError and RuntimeError both catch it."""

    code = "checkpoint"
