"""The model core against the official fixture (../shared/fixtures/songgen-tiny-v2) and its error paths."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from core.model import CheckpointError, LeLM, build_targets, masked_ce
from core.model.pattern import EMPTY, EOS

from tests.paths import TINY_CKPT as CKPT, TINY_FIXTURE as FIXTURE  # noqa: E402


def test_loads_as_v2_float16(tiny):
    assert tiny.version == "v2"
    assert tiny.checkpoint_dtype == torch.float16
    assert tiny.dtype == torch.float32
    assert tiny.num_parameters() == 8_275_344


def test_text_ids_and_structure_ids_exact(tiny, tiny_cases):
    lyr = tiny.lyric_tokenizer(tiny_cases["lyrics"])
    assert lyr.raw_ids == tiny_cases["lyric_ids"]
    assert lyr.raw_structure == tiny_cases["lyric_structure_ids"]
    assert torch.equal(lyr.ids, tiny_cases["lyric_ids_padded"])
    assert torch.equal(lyr.mask, tiny_cases["lyric_mask_padded"])
    assert torch.equal(lyr.structure, tiny_cases["lyric_structure_ids_padded"])
    desc = tiny.description_tokenizer(tiny_cases["descriptions"])
    assert desc.raw_ids == tiny_cases["desc_ids"]
    assert torch.equal(desc.ids, tiny_cases["desc_ids_padded"])
    assert torch.equal(desc.mask, tiny_cases["desc_mask_padded"])
    # Ids the model relies on come from the tokenizer.
    assert tiny.lyric_tokenizer.pad_id == 151643
    assert tiny.lyric_tokenizer.structure_offset == 151645


def test_condition_tensors(tiny, tiny_cases):
    cp = tiny.condition_provider.conditioners
    assert torch.equal(cp["prompt_audio"].process_tokens(tiny_cases["prompt"]), tiny_cases["prompt_tokens_processed"])
    with torch.no_grad():
        s1, s2 = cp["prompt_audio"](tiny_cases["prompt"])
        got = {"lyrics": cp["description"](tiny_cases["lyrics"]), "prompt_stream1": s1, "prompt_stream2": s2,
               "description": cp["type_info"](tiny_cases["descriptions"])}
    for name, value in got.items():
        assert (value - tiny_cases["cond"][name]).abs().max().item() <= 1e-4, name


def test_pattern_sequence_exact(tiny, tiny_cases):
    seq = tiny.pattern.build(tiny_cases["codes"])
    assert torch.equal(seq, tiny_cases["pattern_sequence"])
    assert torch.equal(tiny.pattern.revert(seq, tiny_cases["codes"].shape[-1]), tiny_cases["codes"])


def test_logits_and_ce(tiny, tiny_cases):
    with torch.no_grad():
        logits, mask = tiny.compute_predictions(tiny_cases["codes"], tiny_cases["lyrics"], tiny_cases["descriptions"],
                                                tiny_cases["prompt"])
    assert logits.dtype == torch.float32 and logits.shape == (3, 3, 12, 16385)
    assert torch.equal(mask, tiny_cases["mask"])
    assert (logits - tiny_cases["logits"]).abs().max().item() <= 1e-4
    ce = masked_ce(logits, tiny_cases["codes"], mask)
    assert torch.allclose(ce, tiny_cases["ce_per_stream"], atol=1e-5, rtol=0)
    assert abs(ce.mean().item() - tiny_cases["ce_mean"]) <= 1e-5
    for b in range(3):
        ce_b = masked_ce(logits[b:b + 1], tiny_cases["codes"][b:b + 1], mask[b:b + 1])
        assert torch.allclose(ce_b, tiny_cases["ce_per_case_stream"][b], atol=1e-5, rtol=0)


def test_build_targets_writes_eos_and_empty():
    codes = torch.randint(0, 16384, (2, 3, 5))
    out = build_targets(codes, torch.tensor([5, 3]))
    assert out.shape == (2, 3, 6)  # no spare frame for the full-length song: one appended
    assert (out[0, :, 5] == EOS).all() and torch.equal(out[0, :, :5], codes[0])
    assert (out[1, :, 3] == EOS).all() and (out[1, :, 4:] == EMPTY).all() and torch.equal(out[1, :, :3], codes[1, :, :3])
    spare = build_targets(torch.full((1, 3, 6), 7), torch.tensor([4]))
    assert spare.shape == (1, 3, 6) and (spare[0, :, 4] == EOS).all() and (spare[0, :, 5] == EMPTY).all()


def test_condition_dropout_only_in_train_mode_and_seeded(tiny, tiny_cases):
    c = tiny_cases
    codes, lyr, desc, prompt = c["codes"], c["lyrics"], c["descriptions"], c["prompt"]
    with torch.no_grad():
        ref, _ = tiny.compute_predictions(codes, lyr, desc, prompt)
        tiny.train()
        try:
            tiny.condition_dropout.cfg_p = 1.0  # every condition of every sample dropped
            dropped, _ = tiny.compute_predictions(codes, lyr, desc, prompt)
            tiny.condition_dropout.cfg_p = 0.15
            runs = []
            for _ in range(2):
                tiny.seed_condition_dropout(7)
                runs.append([tiny.compute_predictions(codes, lyr, desc, prompt)[0] for _ in range(4)])
        finally:
            tiny.condition_dropout.cfg_p = tiny.config.cfg_dropout
            tiny.eval()
        null, _ = tiny.compute_predictions(codes, [None] * 3, [None] * 3, None)
    assert torch.equal(dropped, null)
    assert not torch.equal(dropped, ref)
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_roundtrip_identical(tiny, tmp_path):
    out = tiny.save_pretrained(tmp_path / "copy")
    original = torch.load(CKPT / "model.pt", weights_only=True)
    saved = torch.load(out / "model.pt", weights_only=True)
    assert list(saved) == list(original) or set(saved) == set(original)
    for k, v in original.items():
        assert saved[k].dtype == v.dtype == torch.float16 and torch.equal(saved[k], v), k
    assert (out / "config.yaml").read_text() == (CKPT / "config.yaml").read_text()
    again = LeLM.from_pretrained(out)  # runtime root remembered in the sidecar
    a, b = tiny.state_dict(), again.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    bf = tiny.save_pretrained(tmp_path / "bf16", dtype="bfloat16")
    assert all(v.dtype == torch.bfloat16 for v in torch.load(bf / "model.pt", weights_only=True).values())


# ---------------------------------------------------------------- errors

def _runtime_copy(tmp_path: Path, folder: str = "songgen_tiny_v2") -> Path:
    root = tmp_path / "runtime"
    (root / "third_party").mkdir(parents=True)
    os.symlink(FIXTURE / "third_party" / "Qwen2-7B", root / "third_party" / "Qwen2-7B")
    shutil.copytree(FIXTURE / "conf", root / "conf")
    ckpt = root / "ckpt" / folder
    ckpt.mkdir(parents=True)
    shutil.copy(CKPT / "config.yaml", ckpt / "config.yaml")
    os.symlink(CKPT / "model.pt", ckpt / "model.pt")
    return ckpt


def _edit_config(ckpt: Path, edit) -> None:
    data = yaml.safe_load((ckpt / "config.yaml").read_text())
    edit(data)
    (ckpt / "config.yaml").write_text(yaml.safe_dump(data))


def test_error_missing_config_key(tmp_path):
    ckpt = _runtime_copy(tmp_path)
    _edit_config(ckpt, lambda d: d["lm"].pop("num_layers_sub"))
    with pytest.raises(CheckpointError, match="lm.num_layers_sub"):
        LeLM.from_pretrained(ckpt)


def test_error_model_of_another_size(tmp_path):
    ckpt = _runtime_copy(tmp_path)
    _edit_config(ckpt, lambda d: d["lm"].update(dim=32))
    with pytest.raises(CheckpointError) as err:
        LeLM.from_pretrained(ckpt)
    msg = str(err.value)
    assert "audiolm.condition_provider.conditioners.prompt_audio.EOT_emb" in msg
    assert "(1, 16)" in msg and "(1, 32)" in msg


def test_error_no_runtime_root(tmp_path, monkeypatch):
    lone = tmp_path / "lone" / "songgen_tiny_v2"
    lone.mkdir(parents=True)
    shutil.copy(CKPT / "config.yaml", lone / "config.yaml")
    os.symlink(CKPT / "model.pt", lone / "model.pt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as err:
        LeLM.from_pretrained(lone)
    msg = str(err.value)
    assert "Looked in" in msg and str(lone.resolve()) in msg and str(tmp_path.resolve()) in msg


def test_error_codes_out_of_range(tiny):
    codes = torch.zeros(1, 3, 4, dtype=torch.long)
    codes[0, 2, 3] = 16386
    with pytest.raises(ValueError, match=r"codes\[0, 2, 3\] = 16386"):
        tiny.compute_predictions(codes, [None], [None])
    with pytest.raises(ValueError, match=r"\[B, 3, T\]"):
        tiny.compute_predictions(torch.zeros(1, 2, 4, dtype=torch.long), [None], [None])


def test_v1_v2_disagreement_trusts_weights(tmp_path, caplog):
    ckpt = _runtime_copy(tmp_path, folder="songgeneration_base")  # upstream's rule says v1
    with caplog.at_level("WARNING"):
        m = LeLM.from_pretrained(ckpt)
    assert m.version == "v2"
    assert any("151652 rows" in n and "using v2" in n for n in m.notes)
    assert "using v2" in caplog.text
    with pytest.raises(CheckpointError, match="type_info.output_proj.weight"):
        LeLM.from_pretrained(ckpt, version="v1")  # forcing v1 builds a 151646-row table: shapes disagree


def test_safe_eval_rejects_code(tmp_path):
    ckpt = _runtime_copy(tmp_path)
    _edit_config(ckpt, lambda d: d["conditioners"]["prompt_audio"]["qt_embedding"].update(
        max_len="${eval:'__import__(\"os\").getcwd()'}"))
    with pytest.raises(CheckpointError, match="only arithmetic"):
        LeLM.from_pretrained(ckpt)
