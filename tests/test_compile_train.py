"""training.compile: the stacks through torch.compile give the eager loss and gradients; a compiler
failure falls back to eager with one log line."""
from __future__ import annotations

import shutil

import pytest
import torch

from core.model import LeLM, build_targets
from core.model.compiled import compile_stacks

from tests.paths import SHARED  # noqa: E402
FIXTURE = SHARED / "fixtures" / "songgen-tiny-v2"


def tiny_and_step():
    model = LeLM.from_pretrained(FIXTURE / "ckpt" / "songgen_tiny_v2", runtime_root=FIXTURE).train()
    cases = torch.load(FIXTURE / "cases.pt", weights_only=True)
    targets = build_targets(cases["codes"], torch.full((3,), 11))

    def step() -> tuple[float, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        model.seed_condition_dropout(0)  # the same condition dropout draws each time
        loss = model.compute_loss(targets, cases["lyrics"], cases["descriptions"], cases["prompt"])[0].mean()
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return model, step


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="inductor needs a C++ compiler on a CPU")
def test_compiled_step_equals_eager():
    model, step = tiny_and_step()
    loss0, grads0 = step()
    said = []
    compile_stacks(model, said.append)
    loss1, grads1 = step()
    assert not any("failed" in s for s in said), said  # inductor really ran
    assert abs(loss1 - loss0) <= 1e-5
    assert len(grads1) == len(grads0)
    for a, b in zip(grads0, grads1):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # evaluation runs eagerly
        model.eval()
        assert model.transformer.model(inputs_embeds=torch.zeros(1, 2, model.config.dim)).last_hidden_state.shape[1] == 2


def test_compile_failure_falls_back_with_one_line():
    def broken(gm, example_inputs):
        raise RuntimeError("no compiler here")

    model, step = tiny_and_step()
    loss0, _ = step()
    said = []
    compile_stacks(model, said.append, backend=broken)
    assert step()[0] == pytest.approx(loss0, abs=1e-6)
    assert step()[0] == pytest.approx(loss0, abs=1e-6)
    failures = [s for s in said if "failed" in s]
    assert len(failures) == 1 and "no compiler here" in failures[0] and "without it" in failures[0]


def test_config_key_and_presets():
    from core.config import field_spec
    from core.training.presets import GPU_PRESETS

    assert field_spec("training.compile").default is False
    assert all(p["settings"]["training.compile"] is True for p in GPU_PRESETS.values())
