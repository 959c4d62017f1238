"""Every place the studio leans on Gradio beyond its documented API, in one module.

Each function names what it assumes of Gradio; tests/test_gradio_compat.py fails when a Gradio release
stops doing it, so an upgrade shows here instead of as a silent misbehaviour in the page.

1. `named`: Gradio names an event's HTTP API parameters after the handler's `inspect.signature`, and
   finds the `gr.Request` / `gr.EventData` parameters by their type hints (typing.get_type_hints), not by
   position. The Train tab gives its *vals handlers one parameter per config key this way.
2. `plain_events` / `with_context`: `Blocks.fns` maps ids to BlockFunction records whose `fn`,
   `queue`, `inputs`, `outputs`, `types_generator`, `trigger_after`, `trigger_only_on_success` and
   `collects_event_data` attributes Gradio reads when it runs the event; replacing `fn` after the layout
   is built changes what runs.
3. `EarlyHead`: Gradio serves the page as one text/html response with a literal `<head>` and picks the
   page's language before it mounts `Blocks(head=...)`; a script that must run first (the language the
   user picked) is put right after `<head>` by this ASGI middleware, passed through
   `launch(app_kwargs={"middleware": [...]})`.
4. `on_failure`: a `.failure()` follow-up can be added to a built app's event by its id (the documented
   `Dependency.failure`, on a Dependency rebuilt from `BlockFunction._id` inside `with demo:`); the page
   runs it when the event ends in an error, with the same session's request, and its update of the
   event's outputs replaces the red "Error" badges Gradio put on them (`show_progress="hidden"`: no
   spinner either). A `gr.Error(visible=False)` fails the event without a toast in the page.
"""
from __future__ import annotations

import functools
import inspect
import typing
from typing import Any, Callable, Iterable

import gradio as gr
from gradio.events import Dependency
from starlette.middleware import Middleware


# ---- 1. API parameter names for a *vals handler ---------------------------------------------------
def named(fn: Callable, names: Iterable[str], with_request: bool = False) -> Callable:
    """`fn(*vals[, request])` shown in the HTTP API as fn(name1=..., name2=...); with `with_request`
    Gradio passes the browser's request last."""
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    if with_request:
        params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request))
    fn.__signature__ = inspect.Signature(params)
    if with_request:  # Gradio finds the request parameter by its type hint, not the signature
        fn.__annotations__ = {"request": gr.Request}
    return fn


# ---- 2. events of a built app, and a handler that also receives the request and the event ---------
_REQ, _EVT = "_studio_request", "_studio_event"


def plain_events(demo: gr.Blocks) -> list[tuple[Any, bool]]:
    """(BlockFunction, may it end quietly) for each synchronous, non-generator handler of `demo`. Quietly
    (a toast, outputs left as they were) only when queued (an unqueued event cannot show a toast) and no
    success-only follow-up needs it to fail; the others must still end in an error."""
    fns = list(demo.fns.values())
    needs_failure = {f.trigger_after for f in fns if f.trigger_only_on_success and f.trigger_after is not None}
    return [(f, bool(f.queue) and f._id not in needs_failure) for f in fns
            if f.fn is not None and not f.types_generator and not inspect.iscoroutinefunction(f.fn)]


def _context_params(fn: Callable, n_inputs: int, hints: dict) -> list[inspect.Parameter] | None:
    params, n_regular = [], 0
    for p in inspect.signature(fn).parameters.values():
        if p.kind == p.VAR_POSITIONAL:  # *vals: one named parameter per remaining input
            params += [inspect.Parameter(f"_in{i}", p.POSITIONAL_OR_KEYWORD) for i in range(n_inputs - n_regular)]
            break
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        params.append(p.replace(kind=p.POSITIONAL_OR_KEYWORD))
        special = isinstance(p.default, gr.Progress) or hints.get(p.name) in (gr.Request, typing.Optional[gr.Request])
        n_regular += 0 if special else 1
    if any(p.name in (_REQ, _EVT) for p in params):
        return None  # wrapped already
    return params + [inspect.Parameter(_REQ, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
                     inspect.Parameter(_EVT, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]


def with_context(f, handler: Callable[[Callable, list, Any, Any], Any]) -> None:
    """Replace BlockFunction `f`'s handler by one that Gradio also passes the request and the event data
    (appended last): `handler(fn, args, request, event)` runs in its place."""
    fn = f.fn
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable hints: Gradio would not see them either
        hints = {}
    params = _context_params(fn, len(f.inputs), hints)
    if params is None:
        return

    @functools.wraps(fn)
    def run(*args):
        *args, request, event = args
        return handler(fn, args, request, event)

    run.__signature__ = inspect.Signature(params)
    run.__annotations__ = {**{k: v for k, v in hints.items() if k != "return"}, _REQ: gr.Request, _EVT: gr.EventData}
    del run.__wrapped__  # Gradio reads the signature above, not the wrapped function's
    f.fn = run
    f.collects_event_data = True


# ---- 4. a follow-up the page runs when an event fails ------------------------------------------------
def on_failure(demo: gr.Blocks, f, fn: Callable) -> None:
    """After BlockFunction `f` of the built `demo` fails in the page, run `fn(request)` on the same
    outputs: hidden from the API, never a spinner, never waiting behind the events that hold the queue."""
    on_failures(demo, [(f, fn)])


def on_failures(demo: gr.Blocks, pairs) -> None:
    """`on_failure` for many (event, follow-up) pairs in one pass: each exit of a Blocks context rebuilds
    the app's routes and config (about a quarter of a second for the studio), so it is entered once."""
    with demo:
        for f, fn in pairs:
            Dependency(None, {}, f._id, None).failure(
                fn, None, list(f.outputs), api_name=False, show_progress="hidden", queue=True,
                concurrency_limit=None, concurrency_id="studio-failure-follow-up")


# ---- 3. a script first in the page's <head> ---------------------------------------------------------
class EarlyHead:
    """ASGI middleware: puts `script` first in the page's <head>. Gradio mounts its `head` only after it
    has picked the page's language from the browser, too late for the language chosen in the page
    (studio.i18n.HEAD), so that script is served at the top of the HTML instead."""

    def __init__(self, app, script: str):
        self.app, self.script = app, script.encode()

    async def __call__(self, scope, receive, send):
        page_path = scope.get("root_path", "").rstrip("/") + "/"  # only the page itself, never a stream
        if scope["type"] != "http" or scope.get("method") != "GET" or scope.get("path") not in (page_path, "/"):
            return await self.app(scope, receive, send)
        start: dict = {}
        body: list[bytes] = []

        async def rewrite(message):
            if message["type"] == "http.response.start":
                start.update(message)  # sent with the body, once its length is known
                return
            if message["type"] != "http.response.body":
                return await send(message)
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            page, headers = b"".join(body), list(start.get("headers", []))
            if dict(headers).get(b"content-type", b"").startswith(b"text/html") and b"<head>" in page:
                page = page.replace(b"<head>", b"<head>" + self.script, 1)
                headers = [(k, str(len(page)).encode() if k == b"content-length" else v) for k, v in headers]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, rewrite)


def early_head_kwargs(script: str) -> dict:
    """`launch(app_kwargs=...)` that serves `script` first in the page's <head>."""
    return {"middleware": [Middleware(EarlyHead, script=script)]}


def final_rebuild(x_max: float, final: bool) -> float:
    """The loss plot's x-axis limit, nudged (invisibly, 1e-6) on a finished run's last update. Gradio's
    LinePlot rebuilds its Vega chart in the page when a tracked setting such as `x_lim` changes; two rebuilds
    close together (a series appearing right after a run switch) can finish out of order and leave the
    older colour domain, without the newest series (the second run's validation curve), until a reload. One
    more rebuild from the final series puts the truth on screen. Relies on: `x_lim` being a tracked prop
    (tests/test_gradio_compat.py) and the chart being rebuilt when it changes (tests/test_browser_views.py)."""
    return x_max + (1e-6 if final else 0.0)
