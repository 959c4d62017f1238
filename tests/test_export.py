"""Export: LoRA merge exactness (fp32 logits), the official key set, strength 0 == base, full copies, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.paths import TINY_FIXTURE

FIXTURE = TINY_FIXTURE
CKPT = FIXTURE / "ckpt" / "songgen_tiny_v2"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Merged vs unmerged differ only by float32 rounding of (W + sBA)x against Wx + sB(Ax).
ATOL = 1e-4


def make_adapter(out_dir: Path, seed: int = 0, r: int = 4, alpha: float = 8.0) -> Path:
    """A peft adapter on the tiny fixture with random (non-zero) A and B, as core.train would save it."""
    from peft import LoraConfig, get_peft_model

    from core.model import LeLM

    base = LeLM.from_pretrained(CKPT, runtime_root=FIXTURE)
    pm = get_peft_model(base, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=TARGETS))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    out_dir.mkdir(parents=True, exist_ok=True)
    pm.save_pretrained(str(out_dir))
    (out_dir / "trainer_state.json").write_text(json.dumps({"step": 5, "mode": "lora", "base_model": str(CKPT)}))
    return out_dir


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    return make_adapter(tmp_path_factory.mktemp("run") / "runs" / "r1" / "checkpoints" / "step-5")


def inputs(model):
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 16384, (2, 3, 7), generator=g)
    prompt = torch.randint(0, 16384, (2, 3, model.config.prompt_frames), generator=g)
    return codes, ["[verse] hello world.la la", "[chorus] sing"], ["female, pop", None], prompt


def logits_of(model, codes, lyrics, descs, prompt):
    with torch.no_grad():
        return model.compute_predictions(codes, lyrics=lyrics, descriptions=descs, prompt=prompt)[0]


def test_merge_is_exact_and_official(adapter, tmp_path):
    from core.export.merge import export_checkpoint
    from core.model import LeLM
    from core.model.lora import load_lora, set_lora_strength

    peft_model, lelm = load_lora(CKPT, adapter, runtime_root=FIXTURE)
    base = LeLM.from_pretrained(CKPT, runtime_root=FIXTURE)
    args = inputs(lelm)
    ref_base = logits_of(base, *args)
    official = set(torch.load(CKPT / "model.pt", weights_only=True))
    for s in (1.0, 0.5):
        set_lora_strength(peft_model, s)
        ref = logits_of(lelm, *args)  # base + adapter, unmerged, fp32
        assert (ref - ref_base).abs().max() > 1e-2  # the adapter really changes the outputs
        res = export_checkpoint(adapter, tmp_path / f"m{s}", strength=s, dtype="float32")
        assert res.kind == "lora-merge" and res.lora_layers == 7 * 3 and res.base_model == str(CKPT)
        sd = torch.load(tmp_path / f"m{s}" / "model.pt", weights_only=True)
        assert set(sd) == official  # exactly the official key set: audiolm.*, no lora_, no base_model.model.
        assert all(v.dtype == torch.float32 for v in sd.values())
        merged = LeLM.from_pretrained(tmp_path / f"m{s}", runtime_root=FIXTURE)
        got = logits_of(merged, *args)
        diff = (got - ref).abs().max().item()
        assert diff < ATOL, f"strength {s}: merged logits differ by {diff}"
    meta = json.loads((tmp_path / "m0.5" / "export.json").read_text())
    assert meta["strength"] == 0.5 and meta["lora"]["r"] == 4


def test_strength_zero_is_base_and_default_dtype(adapter, tmp_path):
    from core.export.merge import export_checkpoint

    res = export_checkpoint(adapter, tmp_path / "zero", strength=0.0)
    base_sd = torch.load(CKPT / "model.pt", weights_only=True)
    sd = torch.load(tmp_path / "zero" / "model.pt", weights_only=True)
    assert res.dtype == "float16" and set(sd) == set(base_sd)  # default dtype: the base checkpoint's
    for k, v in base_sd.items():
        assert sd[k].dtype == v.dtype and torch.equal(sd[k], v), k
    assert (tmp_path / "zero" / "config.yaml").read_text() == (CKPT / "config.yaml").read_text()


def test_refuses_overwrite_and_copies_full(adapter, tmp_path):
    from core.export.merge import ExportError, checkpoint_kind, export_checkpoint

    out = tmp_path / "full"
    res = export_checkpoint(CKPT, out)
    assert res.kind == "full" and checkpoint_kind(out) == "full"
    assert (out / "model.pt").read_bytes() == (CKPT / "model.pt").read_bytes()
    with pytest.raises(ExportError, match="already exists"):
        export_checkpoint(CKPT, out)
    res = export_checkpoint(CKPT, out, overwrite=True, dtype="bfloat16")
    sd = torch.load(out / "model.pt", weights_only=True)
    assert res.dtype == "bfloat16" and all(v.dtype == torch.bfloat16 for v in sd.values())
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="refusing"):
        export_checkpoint(CKPT, tmp_path / "user", overwrite=True)
    assert (tmp_path / "user" / "notes.txt").read_text() == "mine"
    with pytest.raises(ExportError, match="neither"):
        export_checkpoint(tmp_path / "user", tmp_path / "x")


def test_cli_merge(adapter, tmp_path, capsys):
    from core.cli import main

    ws = tmp_path / "ws"
    rc = main(["merge", "--set", f"workspace={ws}", "--checkpoint", str(adapter), "--strength", "0.5", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert Path(res["out_dir"]) == ws / "exports" / "r1_step-5_strength-0.5"
    assert (Path(res["out_dir"]) / "model.pt").is_file()
    assert main(["merge", "--set", f"workspace={ws}", "--checkpoint", str(adapter), "--strength", "0.5"]) == 1
    assert "already exists" in capsys.readouterr().err
