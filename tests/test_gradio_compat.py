"""What studio.gradio_compat assumes of Gradio, checked against the installed Gradio through a real server:
if a release changes one of these, the test names which workaround broke."""
from __future__ import annotations

import urllib.request

import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from studio import gradio_compat as compat  # noqa: E402
from tests.studio_server import free_port  # noqa: E402

SCRIPT = "<script>window.compatFirst=1</script>"


@pytest.fixture(scope="module")
def served():
    seen: dict = {}

    def fields(*vals):  # a *vals handler, named per value, with the request last
        *vals, request = vals
        seen["request"] = request
        return "+".join(str(v) for v in vals)

    def echo(text):
        return text.upper()

    with gr.Blocks(analytics_enabled=False) as demo:
        a, b, out = gr.Textbox(), gr.Textbox(), gr.Textbox()
        btn = gr.Button()
        btn.click(compat.named(fields, ["training_max_steps", "lora_r"], with_request=True), [a, b], out,
                  api_name="fields")
        btn.click(echo, a, out, api_name="echo")
        # an event whose follow-up runs only on success: it must keep failing, so it is not offered
        btn.click(echo, a, out, api_name="first").success(echo, a, out, api_name=False)
        btn.click(echo, a, out, api_name="unqueued", queue=False)

    def handler(fn, args, request, event):
        seen["context"] = (request, event)
        return fn(*args)

    wrapped = compat.plain_events(demo)
    for f, _ in wrapped:
        compat.with_context(f, handler)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        app_kwargs=compat.early_head_kwargs(SCRIPT))
    url = f"http://127.0.0.1:{port}/"
    try:
        yield demo, wrapped, gradio_client.Client(url, verbose=False), url, seen
    finally:
        demo.close()


def test_named_sets_the_api_parameter_names_and_gradio_passes_the_request(served):
    demo, _, client, _, seen = served
    params = [p["parameter_name"] for p in demo.get_api_info()["named_endpoints"]["/fields"]["parameters"]]
    assert params == ["training_max_steps", "lora_r"]  # Gradio names API parameters after __signature__
    assert client.predict(training_max_steps="5", lora_r="8", api_name="/fields") == "5+8"
    assert isinstance(seen["request"], gr.Request)  # found by its type hint


def test_block_functions_are_wrapped_in_place_and_see_request_and_event(served):
    demo, wrapped, client, _, seen = served
    fns = list(demo.fns.values())
    # the record's fields the studio reads (Gradio's BlockFunction)
    for name in ("fn", "queue", "inputs", "outputs", "types_generator", "trigger_after", "trigger_only_on_success",
                 "collects_event_data", "_id"):
        assert all(hasattr(f, name) for f in fns), name
    quiet = {f.api_name: q for f, q in wrapped}
    # a toast only where Gradio can show one and no success-only follow-up waits for a failure
    assert quiet["fields"] and quiet["echo"] and not quiet["first"] and not quiet["unqueued"]
    assert all(f.collects_event_data for f, _ in wrapped)
    assert client.predict("abc", api_name="/echo") == "ABC"  # the replaced fn is what runs
    request, event = seen["context"]
    assert isinstance(request, gr.Request) and isinstance(event, gr.EventData)
    assert event.target is None  # called through the API: no component triggered it
    assert client.predict("xyz", api_name="/unqueued") == "XYZ"  # an unqueued event gets them too
    request, event = seen["context"]
    assert isinstance(request, gr.Request) and isinstance(event, gr.EventData)


def test_a_failure_follow_up_is_added_to_a_built_event_and_the_error_can_be_hidden():
    """gradio_compat.on_failure: the follow-up is in the page's config as the event's failure-only
    follow-up on the same outputs, without spinner or API name, and a gr.Error(visible=False) reaches a
    raw client as an error the page does not show (the page's side is walked in tests/test_browser_views.py)."""
    import json

    import httpx

    def refuse(text):
        raise gr.Error(f"no {text}", visible=False, print_exception=False)

    def show(request: gr.Request):
        return f"shown for {request.session_hash}", gr.skip()

    with gr.Blocks(analytics_enabled=False) as demo:
        a, out, msg = gr.Textbox(), gr.Textbox(), gr.Markdown()
        gr.Button().click(refuse, a, [msg, out], api_name="refuse")
    f = next(iter(demo.fns.values()))
    compat.on_failure(demo, f, show)
    deps = demo.get_config_file()["dependencies"]
    follow = next(d for d in deps if d.get("trigger_after") == f._id)
    assert follow["trigger_only_on_failure"] and not follow["trigger_only_on_success"]
    assert follow["outputs"] == [o._id for o in f.outputs] and follow["show_progress"] == "hidden"
    assert follow["api_visibility"] != "public" and "/refuse" in demo.get_api_info()["named_endpoints"]
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            done = []
            for fn_index, data in ((f._id, ["x"]), (follow["id"], [])):
                http.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": "s1",
                                                          "trigger_id": f.targets[0][0], "event_data": None})
                with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": "s1"}) as stream:
                    msgs = (json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:"))
                    done.append(next(m for m in msgs if m.get("msg") == "process_completed"))
        assert done[0]["success"] is False and done[0]["output"]["error"] == "no x"
        assert done[0]["output"]["visible"] is False  # the page shows no toast for it
        assert done[1]["success"] is True and done[1]["output"]["data"][0] == "shown for s1"
    finally:
        demo.close()


def test_early_head_puts_its_script_first_in_the_page(served):
    *_, url, _ = served
    html = urllib.request.urlopen(url).read().decode()
    head = html.index("<head>")
    assert html.index(SCRIPT) == head + len("<head>")
    assert html.index(SCRIPT) < html.index('<script type="module"')


def test_the_loss_plot_tracks_x_lim_so_a_final_nudge_rebuilds_it():
    """gradio_compat.final_rebuild relies on LinePlot sending `x_lim` to the page as part of its config (a
    changed value makes the page rebuild the chart); the rebuild itself is checked in tests/test_browser_views.py."""
    from studio.gradio_compat import final_rebuild

    plot = gr.LinePlot(x="step", y="loss", x_lim=[0, 20])
    assert plot.get_config()["x_lim"] == [0, 20]
    assert final_rebuild(20, True) != 20 and final_rebuild(20, False) == 20
