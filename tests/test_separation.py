"""Demucs (htdemucs) separation from a local checkpoint against the songgen-codec-tiny fixture."""
from __future__ import annotations

import json

import pytest
import torch

from tests.paths import SHARED  # noqa: E402
FIX = SHARED / "fixtures" / "songgen-codec-tiny"
CKPT = FIX / "third_party" / "demucs" / "ckpt" / "htdemucs.pth"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cases():
    return torch.load(FIX / "cases.pt", weights_only=True)


@pytest.fixture(scope="module")
def sep(cases):
    from core.audio.separation import Separator
    # no kwargs: the widths are read from the checkpoint's shapes (the fixture changed channels/bottom_channels)
    return Separator.from_checkpoint(CKPT, seed=0)


@pytest.fixture(scope="module")
def xn(cases):
    s = cases["signal"]
    mix = s["vocal"] + s["bgm"]
    x = torch.cat([mix, mix], -1)[:, :441000]
    ref = x.mean(0)
    d = cases["demucs"]
    assert abs(ref.mean().item() - d["input_mean"]) < 1e-9 and abs(ref.std().item() - d["input_std"]) < 1e-7
    return (x - ref.mean()) / ref.std()


def test_find_checkpoint(tmp_path):
    from core.audio.separation import find_demucs_checkpoint
    assert find_demucs_checkpoint(FIX) == CKPT
    assert find_demucs_checkpoint(tmp_path) is None
    assert find_demucs_checkpoint(None) is None


def test_model_forward(sep, cases, xn):
    d = cases["demucs"]
    assert sep.sources == d["sources"] and sep.samplerate == d["samplerate"]
    with torch.no_grad():
        out = sep.model(xn[None, :, : d["forward_in_samples"]])
    assert torch.allclose(out, d["forward_out"], atol=1e-5)


def test_apply_with_replayed_shift(sep, cases, xn):
    """The official setting (shifts=1, split, overlap 0.25) with the reference's random shift replayed."""
    d = cases["demucs"]
    out = sep.apply(xn[None], shift=d["apply_shifts1_offset"][0])
    assert list(out.shape) == list(d["apply_shape"])
    e = d["apply_shifts1"]
    for s in e["slices"]:
        assert torch.allclose(out[0, ..., s["start"]:s["start"] + s["wav"].shape[-1]], s["wav"], atol=1e-5)
    assert torch.allclose(out[0].double().pow(2).sum(-1), e["sumsq"], rtol=1e-5)
    assert torch.allclose(out[0].double().sum(-1), e["sum"], atol=1e-2)


def test_shift_is_seeded(sep):
    from core.audio.separation import Separator
    a = Separator(sep.model, seed=1).draw_shift()
    assert a == Separator(sep.model, seed=1).draw_shift()
    assert 0 <= a <= sep.samplerate // 2
    assert len({Separator(sep.model, seed=s).draw_shift() for s in range(5)}) > 1


def test_separate_api(sep, cases, monkeypatch):
    s = cases["signal"]
    mix = (s["vocal"] + s["bgm"])[:, :24000]                  # 0.5 s at 48 kHz
    src = sep.separate_sources(mix, 48000)
    assert src.shape == (4, 2, 24000) and torch.isfinite(src).all()
    # both bgm modes from the same (deterministic, seeded) separation
    monkeypatch.setattr(sep, "separate_sources", lambda *a, **k: src)
    vocal, bgm = sep.separate(mix, 48000, bgm_mode="stems")
    assert torch.equal(vocal, src[3]) and torch.allclose(bgm, src[0] + src[1] + src[2])
    vocal2, bgm2 = sep.separate(mix, 48000, bgm_mode="mix_minus_vocal")
    assert torch.equal(vocal2, vocal) and torch.allclose(vocal2 + bgm2, mix, atol=1e-6)
    with pytest.raises(ValueError, match="bgm_mode"):
        sep.separate(mix, 48000, bgm_mode="karaoke")


def test_codec_encode_without_stems_uses_demucs(cases, monkeypatch):
    from core.codec import OfficialCodec
    from core.audio.separation import Separator
    fx = json.loads((FIX / "fixture.json").read_text())
    codec = OfficialCodec.from_runtime(FIX, hparams=fx)
    stems = []
    real = Separator.separate
    monkeypatch.setattr(Separator, "separate", lambda *a, **k: stems.append(real(*a, **k)) or stems[-1])
    s = cases["signal"]
    mix = (s["vocal"] + s["bgm"])[:, :48000]
    codes = codec.encode(mix)
    assert codes.shape == (3, 26) and len(stems) == 1
    vocal, bgm = stems[0]
    assert vocal.shape == bgm.shape == mix.shape
    cv, cb = codec.encode_sep(vocal, bgm)
    assert torch.equal(codes[1], cv) and torch.equal(codes[2], cb)


def test_errors(tmp_path):
    from core.audio.separation import SeparationError, Separator
    with pytest.raises(SeparationError, match="not found: .*missing.pth"):
        Separator.from_checkpoint(tmp_path / "missing.pth")
    # explicit kwargs that contradict the checkpoint: the first mismatching tensor is named
    with pytest.raises(SeparationError, match=r"htdemucs\.pth: tensor 'encoder\.0\.conv\.weight' has shape \[8, 4, 8, 1\]"):
        Separator.from_checkpoint(CKPT, kwargs={"channels": 48})
    # the fixture's stated kwargs give the same model as the shape-inferred one
    a = Separator.from_checkpoint(CKPT, kwargs={"channels": 8, "bottom_channels": 32}).model.state_dict()
    assert set(a) == set(torch.load(CKPT, weights_only=True))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"nope")
    with pytest.raises(SeparationError, match="cannot read Demucs checkpoint"):
        Separator.from_checkpoint(junk, kwargs={"channels": 8, "bottom_channels": 32})
