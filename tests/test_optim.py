"""Each optimizer choice trains the demo model a few steps; 8-bit AdamW says clearly where it cannot run."""
from __future__ import annotations

import pytest
import torch

from core.model import LeLM, build_targets
from core.training.demo_pretrain import ensure_demo_model
from core.training.optimizers import OPTIMIZERS, OptimizerError, build_optimizer


@pytest.fixture(scope="module")
def demo_ckpt(tmp_path_factory):
    return ensure_demo_model(tmp_path_factory.mktemp("ws"))


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS if n != "adamw_8bit"])
def test_optimizer_trains_demo_model(demo_ckpt, name):
    model = LeLM.from_pretrained(demo_ckpt).train()
    model.condition_dropout.cfg_p = 0.0
    model.condition_dropout.attribute_p = {}
    params = [p for n, p in model.named_parameters() if n not in model.unused_parameter_names()]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.01},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = build_optimizer(name, groups, lr=1e-3, device="cpu")
    if name == "adamw":
        assert opt.defaults["fused"]  # the fused kernel exists on CPU in this torch
    torch.manual_seed(0)
    targets = build_targets(torch.randint(0, 16384, (2, 3, 30)), torch.tensor([30, 24]))
    losses = []
    for _ in range(3):
        loss = model.compute_loss(targets, ["[verse] la la", None], ["pop", None])[0].mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


def test_8bit_adamw_and_unknown_names_explain():
    p = [torch.nn.Parameter(torch.zeros(4, 4))]
    with pytest.raises(OptimizerError, match="CUDA GPUs only.*choose adamw or adafactor"):
        build_optimizer("adamw_8bit", [{"params": p}], lr=1e-3, device="cpu")
    with pytest.raises(OptimizerError, match="not one of adamw, adamw_8bit, adafactor"):
        build_optimizer("prodigy", [{"params": p}], lr=1e-3)


def test_lora_on_a_bfloat16_base_trains(demo_ckpt, tmp_path):
    """training.base_dtype: bfloat16 (the small-card presets): frozen bf16 base, float32 adapters, loss falls."""
    from core.config import ConfigError, StudioConfig
    from core.training.trainer import build_model, make_optimizer

    data = StudioConfig().to_dict()
    data["paths"]["base_model_path"] = str(demo_ckpt)
    data["training"].update(base_dtype="bfloat16", optimizer="adafactor", learning_rate=3e-3, condition_dropout=False)
    cfg = StudioConfig.model_validate(data)
    model, lelm, _ = build_model(cfg)
    assert lelm.dtype == torch.bfloat16
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    opt = make_optimizer(cfg, model)
    lelm.train()
    torch.manual_seed(0)
    targets = build_targets(torch.randint(0, 16384, (1, 3, 20)), torch.tensor([20]))
    losses = []
    for _ in range(3):
        loss = lelm.compute_loss(targets, ["[verse] la la"], ["pop"])[0].mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    data["training"].update(type="full")
    with pytest.raises(ConfigError, match="base_dtype: bfloat16 keeps frozen base weights for LoRA"):
        build_model(StudioConfig.model_validate(data))
