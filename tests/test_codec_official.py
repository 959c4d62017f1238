"""The official codec against the songgen-codec-tiny fixture (outputs of the official code on CPU, fp32).

Codes must be identical except at near-ties of the nearest-codeword search (see `assert_codes_match`);
intermediates, latents and audio within the fixture README's tolerances.
"""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from tests.paths import SHARED  # noqa: E402
FIX = SHARED / "fixtures" / "songgen-codec-tiny"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fx():
    return json.loads((FIX / "fixture.json").read_text())


@pytest.fixture(scope="module")
def cases():
    return torch.load(FIX / "cases.pt", weights_only=True)


@pytest.fixture(scope="module")
def codec(fx):
    from core.codec import OfficialCodec
    return OfficialCodec.from_runtime(FIX, hparams=fx)


@pytest.fixture(scope="module")
def signal(cases):
    s = cases["signal"]
    mix = s["vocal"] + s["bgm"]
    return s["vocal"], s["bgm"], mix


def _noise(case):
    return [n[0] for n in case["noise"]]


def _codes(case):
    return torch.cat([case["codes_vocal"][0], case["codes_bgm"][0]])


# ---------------------------------------------------------------------------------------------- near-ties
# The lookup picks the nearest of 16k unit codewords to the projected latent in fp32. Where two codewords are
# (almost) equally near, the CPU's matmul kernels (MKL AVX2 vs AVX-512 accumulate in different orders) can
# pick either: a flip there says nothing about our code. A differing code is accepted only when, in float64,
# the two codes are the two nearest codewords and their distances differ by less than TIE_EPS relative.
TIE_EPS = 1e-4


class LatentRecorder:
    """Records every z_e [B, d, T] each VQ head looks up (monkeypatched FactorizedVQ.lookup), in call order."""

    def __init__(self, monkeypatch):
        from core.codec.official.quantizer import FactorizedVQ
        self.seen: dict[int, list[torch.Tensor]] = {}
        real = FactorizedVQ.lookup

        def lookup(vq, z_e):
            self.seen.setdefault(id(vq), []).append(z_e.detach().clone())
            return real(vq, z_e)

        monkeypatch.setattr(FactorizedVQ, "lookup", lookup)

    def latents(self, vq) -> torch.Tensor:
        """[d, T] over all windows this head encoded (batch 1), frame t of the clip at column t."""
        return torch.cat([z[0] for z in self.seen.pop(id(vq))], dim=-1)


def tie_margin(z: torch.Tensor, codebook: torch.Tensor, a: int, b: int) -> tuple[float, bool]:
    """Relative distance gap between codewords a and b for one latent z [d] (float64, normalised as the
    lookup does), and whether a and b are the two nearest codewords."""
    e = torch.nn.functional.normalize(z.double(), dim=0)
    c = torch.nn.functional.normalize(codebook.double(), dim=1)
    dist = (c - e).pow(2).sum(1)
    two = set(dist.topk(2, largest=False).indices.tolist())
    da, db = float(dist[a]), float(dist[b])
    return abs(da - db) / max(da, db, 1e-12), two == {a, b}


def assert_codes_match(got: torch.Tensor, expected: torch.Tensor, latents: torch.Tensor, codebook: torch.Tensor,
                       what: str) -> int:
    """Codes equal except near-tie flips; returns (and warns about) the number of flips accepted."""
    assert got.shape == expected.shape, f"{what}: shape {list(got.shape)} != {list(expected.shape)}"
    assert latents.shape[-1] >= got.numel(), f"{what}: {latents.shape[-1]} latents for {got.numel()} codes"
    flips = []
    for t in (got != expected).nonzero().flatten().tolist():
        g, x = int(got[t]), int(expected[t])
        margin, nearest_two = tie_margin(latents[:, t], codebook, g, x)
        assert nearest_two and margin < TIE_EPS, (
            f"{what}: code at frame {t} is {g}, the official code gives {x}; not a near-tie "
            f"(relative distance gap {margin:.3g} >= {TIE_EPS:g} or not the two nearest codewords)")
        flips.append(f"frame {t}: {x}->{g} (gap {margin:.2g})")
    if flips:
        warnings.warn(f"{what}: {len(flips)} near-tie code flip(s) of {got.numel()} accepted "
                      f"(relative gap < {TIE_EPS:g}): {'; '.join(flips)}")
    return len(flips)


def test_tie_margin_accepts_only_ties():
    torch.manual_seed(0)
    book = torch.randn(64, 8, dtype=torch.float64)
    mid = torch.nn.functional.normalize(book[3], dim=0) + torch.nn.functional.normalize(book[5], dim=0)
    margin, two = tie_margin(mid, book, 3, 5)  # exactly between 3 and 5: a tie
    assert margin < 1e-12 and two
    z = book[3] + 0.05 * torch.randn(8, dtype=torch.float64)  # clearly nearest to 3
    far = int(torch.nn.functional.normalize(book, dim=1).matmul(torch.nn.functional.normalize(z, dim=0)).argmin())
    margin, _ = tie_margin(z, book, 3, far)
    assert margin > TIE_EPS
    codes = torch.tensor([3, 3])
    lat = torch.stack([mid, z], dim=1)
    with pytest.warns(UserWarning, match="toy: 1 near-tie code flip"):
        assert assert_codes_match(torch.tensor([5, 3]), codes, lat, book, "toy") == 1  # the tie flip is accepted
    with pytest.raises(AssertionError, match="frame 1.*not a near-tie"):
        assert_codes_match(torch.tensor([3, far]), codes, lat, book, "toy")


# ---------------------------------------------------------------------------------------------- encode
def test_protocol_attributes(codec):
    from core.codec import AudioCodec
    assert isinstance(codec, AudioCodec)
    assert (codec.id, codec.frame_rate, codec.sample_rate, codec.is_demo) == ("songgen-official-1", 25, 48000, False)


def test_signal_recomputation(cases, signal):
    _, _, mix = signal
    assert torch.allclose(mix.double().sum(-1), cases["signal"]["mix_sum"], atol=1e-6)


def test_encode_codes_exact(codec, cases, signal, monkeypatch):
    vocal, bgm, mix = signal
    rec = LatentRecorder(monkeypatch)
    codes = codec.encode(mix, vocal=vocal, bgm=bgm)
    e = cases["encode"]
    assert codes.dtype == torch.long and codes.shape == (3, 151)
    for row, (stream, tok) in enumerate([("mixed", codec.mixed_tokenizer()), ("vocal", codec.sep_tokenizer()),
                                         ("bgm", codec.sep_tokenizer())]):
        vq = tok.heads[stream][1]
        latents = rec.latents(vq)
        assert_codes_match(codes[row], e[f"codes_{stream}"][0, 0], latents, vq.codebook, f"{stream} codes")
        if stream == "vocal":
            vocal_latents, vocal_book = latents, vq.codebook
    monkeypatch.undo()
    # The fixture's near-tie (vocal frame 38, gap ~8e-5, which AVX-512 MKL kernels flip): replacing it by the
    # runner-up codeword is accepted, replacing the code of the frame with the widest gap is not.
    expected = e["codes_vocal"][0, 0]
    e64 = torch.nn.functional.normalize(vocal_latents[:, : expected.numel()].double(), dim=0)
    dist = torch.cdist(e64.t(), torch.nn.functional.normalize(vocal_book.double(), dim=1)).pow(2)
    top = dist.topk(2, largest=False)
    gaps = (top.values[:, 1] - top.values[:, 0]) / top.values[:, 1]
    # the other of the two nearest codewords at each frame (on this CPU's latents the official code may be
    # either of them at a near-tie)
    other = torch.where(top.indices[:, 0] == expected, top.indices[:, 1], top.indices[:, 0])
    ties = (gaps < TIE_EPS).nonzero().flatten()
    assert ties.tolist() == [38]
    flipped = expected.clone()
    flipped[ties] = other[ties]
    with pytest.warns(UserWarning, match="vocal: 1 near-tie code flip"):
        assert assert_codes_match(flipped, expected, vocal_latents, vocal_book, "vocal") == 1
    wide = int(gaps.argmax())
    flipped[wide] = other[wide]
    with pytest.raises(AssertionError, match=f"frame {wide} .*not a near-tie"):
        assert_codes_match(flipped, expected, vocal_latents, vocal_book, "vocal")
    # deterministic and cached: a second codec on the same files reuses the loaded modules
    from core.codec import OfficialCodec
    again = OfficialCodec.from_runtime(FIX, hparams=codec.hp)
    assert again.sep_tokenizer() is codec.sep_tokenizer()
    assert torch.equal(again.encode_mixed(mix), codes[0])


@pytest.mark.parametrize("stream", ["mixed", "vocal", "bgm"])
def test_encode_intermediates(codec, cases, signal, stream):
    from core.codec.official.frontend import to_mono_24k
    from core.codec.official.tokenizer import iter_windows, peak_normalise
    vocal, bgm, mix = signal
    ref = cases["encode"]["first_window"][stream]
    audio = {"mixed": mix, "vocal": vocal, "bgm": bgm}[stream]
    tok = codec.mixed_tokenizer() if stream == "mixed" else codec.sep_tokenizer()
    layer, vq = tok.heads[stream]
    assert layer == ref["layer"]
    win = next(iter_windows(peak_normalise(audio)))[2][None]
    mono = to_mono_24k(win)
    assert torch.allclose(mono[:, :24000], ref["mono24k_head"], atol=1e-6)
    mel = tok.encoder.mel(mono)[..., : ref["log_mel"].shape[-1]]
    # Above ~-39 dB the mel matches to 1e-4. Below, it sits in the resampler's stop band where fp32
    # rounding noise of the 48->24 kHz filter dominates (a float64 STFT differs from both by ~0.03).
    loud = ref["log_mel"] > -2.5
    assert (mel - ref["log_mel"])[loud].abs().max() < 1e-4
    assert (mel - ref["log_mel"]).abs().max() < 0.25
    assert (mel - ref["log_mel"]).abs().mean() < 1e-3
    # conv front end on the reference mel head (the last frames see the cut edge, so they are left out)
    with torch.no_grad():
        conv = tok.encoder.conv(ref["log_mel"])
    n = ref["log_mel"].shape[-1] // 4 - 4
    assert torch.allclose(conv[:, :n], ref["conv_out"][:, :n], atol=1e-4)
    # the stock transformers conformer from the reference conv output
    with torch.no_grad():
        h = ref["conv_out"]
        pe = tok.encoder.conformer.embed_positions(h)
        for i in range(layer):
            h = tok.encoder.conformer.layers[i](h, relative_position_embeddings=pe)
            h = h[0] if isinstance(h, tuple) else h
    assert torch.allclose(h, ref["hidden"], atol=1e-4)
    # VQ: in_proj with the folded weight norm, then the cosine lookup gives the reference codes
    z_e = vq.project_in(ref["hidden"])
    assert torch.allclose(z_e, ref["z_e"], atol=1e-5)
    codes = vq.lookup(ref["z_e"])[0]
    full = cases["encode"][f"codes_{stream}"][0, 0]
    assert_codes_match(codes[: full.shape[0]], full, ref["z_e"][0], vq.codebook, f"{stream} first-window codes")


def test_window_layout_long_clip():
    from core.codec.official.tokenizer import WINDOW_S, SR, iter_windows
    L = WINDOW_S * SR
    for n in (L // 3, L, int(2.5 * L)):
        x = torch.arange(n, dtype=torch.float32).expand(2, n)
        a = x
        while a.shape[-1] < L:
            a = torch.cat([a, a], -1)
        n_win = a.shape[-1] // L + 1
        ref = torch.cat([a, a], -1)[:, : n_win * L]
        got = torch.cat([w for _, _, w in iter_windows(x)], -1)
        assert torch.equal(got, ref)


# ---------------------------------------------------------------------------------------------- decode
def test_vq_decode_unit(codec, cases):
    u = cases["decode"]["vq_decode_unit"]
    flow = codec.flow()
    out_v = flow.vq_vocal.decode(u["codes_vocal"][0]).transpose(1, 2)
    out_b = flow.vq_bgm.decode(u["codes_bgm"][0]).transpose(1, 2)
    assert torch.allclose(out_v, u["out_vocal"], atol=1e-6)
    assert torch.allclose(out_b, u["out_bgm"], atol=1e-6)


def test_estimator_unit(codec, cases):
    u = cases["decode"]["estimator_unit"]
    with torch.no_grad():
        out = codec.flow().estimator(u["x"], u["t"])
    assert torch.allclose(out, u["out"], atol=1e-5)


def test_decode_one_window(codec, cases, monkeypatch):
    from core.codec.official.flow import FlowDecoder
    ow = cases["decode"]["one_window"]
    latents = []
    real = FlowDecoder.sample_window
    monkeypatch.setattr(FlowDecoder, "sample_window", lambda *a, **k: latents.append(real(*a, **k)) or latents[-1])
    cv, cb = _codes(ow)
    wav, sr = codec.decode(torch.stack([cv, cv, cb]), noise=_noise(ow))  # [3, T]: the mixed row is ignored
    assert len(latents) == 1 and torch.allclose(latents[0], ow["latents"][0][0], atol=1e-4)
    assert sr == 48000 and list(wav.shape) == list(ow["wav_shape"])
    assert torch.allclose(wav[:, :72000], ow["wav_head"], atol=1e-5)
    assert torch.allclose(wav[:, -9600:], ow["wav_tail"], atol=1e-5)
    assert torch.allclose(wav.double().sum(-1), ow["wav_sum"], atol=1e-2)
    assert torch.allclose(wav.double().pow(2).sum(-1), ow["wav_sumsq"], rtol=1e-5)


def test_decode_two_windows(codec, cases):
    tw = cases["decode"]["two_windows"]
    wav, _ = codec.decode(_codes(tw), noise=_noise(tw))
    assert list(wav.shape) == list(tw["wav_shape"])
    for s in tw["wav_slices"]:
        assert torch.allclose(wav[:, s["start"]:s["start"] + s["wav"].shape[-1]], s["wav"], atol=1e-5)
    assert torch.allclose(wav.double().pow(2).sum(-1), tw["wav_sumsq"], rtol=1e-5)


def test_decode_with_prompt(codec, cases, signal, monkeypatch):
    vocal, bgm, _ = signal
    wp = cases["decode"]["with_prompt"]
    moments = codec.vae().encode_moments((vocal + bgm)[None])
    assert torch.allclose(moments, wp["prompt_vae_pre_bottleneck"], atol=1e-5)
    rec = LatentRecorder(monkeypatch)
    lat, pcv, pcb = codec.prompt_latents(vocal, bgm, noise=wp["prompt_bottleneck_noise"])
    monkeypatch.undo()
    assert torch.allclose(lat, wp["prompt_latent"][0], atol=1e-5)
    heads = codec.sep_tokenizer().heads
    for got, stream in ((pcv, "vocal"), (pcb, "bgm")):
        vq = heads[stream][1]
        assert_codes_match(got, wp[f"prompt_codes_{stream}"][0, 0], rec.latents(vq), vq.codebook,
                           f"prompt {stream} codes")
    ow = cases["decode"]["one_window"]
    wav, _ = codec.decode(_codes(ow), prompt=(vocal, bgm), noise=_noise(wp),
                          prompt_noise=wp["prompt_bottleneck_noise"])
    assert list(wav.shape) == list(wp["wav_shape"])
    for s in wp["wav_slices"]:
        assert torch.allclose(wav[:, s["start"]:s["start"] + s["wav"].shape[-1]], s["wav"], atol=1e-5)
    assert torch.allclose(wav.double().pow(2).sum(-1), wp["wav_sumsq"], rtol=1e-5)


def test_vae_encoder_and_chunked_decode(codec, cases):
    vae = codec.vae()
    assert torch.allclose(vae.encode_moments(cases["vae"]["enc_in"]), cases["vae"]["enc_pre_bottleneck"], atol=1e-5)
    lat = cases["decode"]["one_window"]["latents"][0][:, :, :300]
    full = vae.decode(lat, chunk=None)
    tiled = vae.decode(lat, chunk=128, overlap=32)
    assert tiled.shape == full.shape
    assert (tiled - full).abs().max() < 1e-5


def test_single_track_uses_silence_tokens(codec, cases, monkeypatch):
    from core.codec.official.flow import FlowDecoder
    seen = []
    real = FlowDecoder.sample_window

    def spy(self, cv, cb, *a, **k):
        seen.append((cv.clone(), cb.clone()))
        return real(self, cv, cb, *a, **k)
    monkeypatch.setattr(FlowDecoder, "sample_window", spy)
    codes = _codes(cases["decode"]["vq_decode_unit"])
    wav, _ = codec.decode(codes, track="vocal", num_steps=1, seed=0, vae_chunk=None)
    assert (seen[-1][1] == 9670).all() and not (seen[-1][0] == 3142).all()
    wav2, _ = codec.decode(codes, track="bgm", num_steps=1, seed=0, vae_chunk=None)
    assert (seen[-1][0] == 3142).all()
    assert wav.shape == wav2.shape == (2, 16 * 1920)
    assert torch.isfinite(wav).all()


# ---------------------------------------------------------------------------------------------- loading
def test_fp16_and_weight_norm_spellings(tmp_path, fx, cases, signal):
    """fp16 tensors are read as fp32; the legacy weight_g/weight_v spelling of pos_conv_embed and the
    parametrization spelling of the VQ projections both load and give the same codes."""
    from safetensors.torch import load_file, save_file
    from core.codec import OfficialCodec
    sd = load_file(str(FIX / fx["files"]["mixed"]))
    p = "bestrq.model.conformer.pos_conv_embed.conv."
    sd[p + "weight_g"] = sd.pop(p + "parametrizations.weight.original0")
    sd[p + "weight_v"] = sd.pop(p + "parametrizations.weight.original1")
    q = "rvq_bestrq_emb.quantizers.0.in_proj."
    sd[q + "parametrizations.weight.original0"] = sd.pop(q + "weight_g")
    sd[q + "parametrizations.weight.original1"] = sd.pop(q + "weight_v")
    sd["bestrq.model.cls_token"] = sd["bestrq.model.cls_token"].half()
    sd["rsq48tobestrq.kernel"] = sd["rsq48tobestrq.kernel"].half()
    f = tmp_path / "model_2_fixed.safetensors"
    save_file(sd, str(f))
    codec = OfficialCodec.from_files(mixed=f, septoken=FIX / fx["files"]["septoken"], hparams=fx)
    _, _, mix = signal
    assert torch.equal(codec.encode_mixed(mix), cases["encode"]["codes_mixed"][0, 0])
    # an all-fp16 file loads (codes may move at near-ties, so only the shape is checked here)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(str(FIX / fx["files"]["mixed"])).items()}
    g = tmp_path / "half" / "model_2_fixed.safetensors"
    g.parent.mkdir()
    save_file(half, str(g))
    codec16 = OfficialCodec.from_files(mixed=g, septoken=FIX / fx["files"]["septoken"], hparams=fx)
    assert codec16.encode_mixed(mix[:, :48000]).shape == (26,)


def test_missing_file_errors(tmp_path, fx):
    from core.codec import OfficialCodec
    from core.codec.official import WeightFileError
    with pytest.raises(WeightFileError, match="septoken file not found: .*nope.safetensors"):
        OfficialCodec.from_files(septoken=tmp_path / "nope.safetensors")
    with pytest.raises(WeightFileError, match="mixed file not found in runtime root"):
        OfficialCodec.from_runtime(tmp_path)


def test_wrong_file_names_file_and_first_bad_key(tmp_path, fx, signal):
    from safetensors.torch import load_file, save_file
    from core.codec import OfficialCodec
    from core.codec.official import WeightFileError
    _, _, mix = signal
    # the septoken file given as the mixed tokenizer works (it has the same encoder keys); the VAE ckpt does not
    bad = OfficialCodec.from_files(mixed=FIX / fx["files"]["vae_ckpt"], septoken=FIX / fx["files"]["septoken"],
                                   hparams=fx)
    with pytest.raises(WeightFileError, match=r"autoencoder_music_1320k\.ckpt is missing tensor 'bestrq\.model\."):
        bad.encode_mixed(mix)
    # one tensor removed: the error names it
    sd = load_file(str(FIX / fx["files"]["septoken"]))
    del sd["cfm_wrapper.estimator.h.1.ln_2.weight"]
    f = tmp_path / "model_2.safetensors"
    save_file(sd, str(f))
    c = OfficialCodec.from_files(septoken=f, hparams=fx)
    with pytest.raises(WeightFileError, match=r"model_2\.safetensors is missing tensor 'cfm_wrapper\.estimator\.h\.1\.ln_2\.weight'"):
        c.flow()
    # wrong shape
    sd = load_file(str(FIX / fx["files"]["septoken"]))
    sd["cfm_wrapper.estimator.h.0.attn.c_proj.bias"] = torch.zeros(7)
    save_file(sd, str(f))
    c = OfficialCodec.from_files(septoken=f, hparams={**fx, "estimator": {**fx["estimator"], "n_head": 4}})
    with pytest.raises(WeightFileError, match=r"'cfm_wrapper\.estimator\.h\.0\.attn\.c_proj\.bias' has shape \[7\]"):
        c.flow()
    # not a weight file at all
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    c = OfficialCodec.from_files(septoken=junk, hparams=fx)
    with pytest.raises(WeightFileError, match="cannot read septoken tokenizer file .*junk.safetensors"):
        c.sep_tokenizer()
    # a VAE checkpoint whose shapes do not fit its config
    import torch as _t
    vsd = _t.load(FIX / fx["files"]["vae_ckpt"], weights_only=True)
    vsd["state_dict"]["decoder.layers.0.bias"] = _t.zeros(3)
    vbad = tmp_path / "vae.ckpt"
    _t.save(vsd, vbad)
    c = OfficialCodec.from_files(septoken=FIX / fx["files"]["septoken"], vae_config=FIX / fx["files"]["vae_config"],
                                 vae_ckpt=vbad, hparams=fx)
    with pytest.raises(WeightFileError, match=r"vae\.ckpt: tensor 'decoder\.layers\.0\.bias' has shape \[3\]"):
        c.vae()


def test_from_config(tmp_path, fx, cases, signal):
    from core.codec import OfficialCodec
    from core.codec.official import WeightFileError
    from core.config import StudioConfig
    cfg = StudioConfig()
    # nothing set: ONE message naming every missing file, the folder to set and the way out
    with pytest.raises(WeightFileError) as err:
        OfficialCodec.from_config(cfg)
    msg = str(err.value)
    for name in ("model_2_fixed.safetensors", "model_2.safetensors", "stable_audio_1920_vae.json",
                 "autoencoder_music_1320k.ckpt", "htdemucs.pth"):
        assert name in msg
    assert "5 of its files are missing" in msg and "no SongGeneration runtime folder (paths.runtime_path)" in msg
    assert "choose the demo codec" in msg
    cfg.paths.runtime_path = str(tmp_path)              # an empty folder: where each file was looked for
    with pytest.raises(WeightFileError, match=r"looked at .*ckpt/model_1rvq/model_2_fixed\.safetensors"):
        OfficialCodec.from_config(cfg)
    # explicit tokenizer paths (a file or the folder holding it) win over the runtime layout
    cfg.paths.audio_tokenizer_path = str(FIX / "model_1rvq")
    cfg.paths.separate_audio_tokenizer_path = str(FIX / fx["files"]["septoken"])
    with pytest.raises(WeightFileError, match="3 of its files are missing: stable_audio_1920_vae.json"):
        OfficialCodec.from_config(cfg)
    cfg.paths.audio_tokenizer_path = cfg.paths.separate_audio_tokenizer_path = None
    cfg.paths.runtime_path = str(FIX)
    codec = OfficialCodec.from_config(cfg)              # hparams from the root's fixture.json
    assert codec.hp["layers"] == fx["layers"] and codec.hp["estimator"]["n_head"] == fx["estimator"]["n_head"]
    assert codec.files["demucs"] == FIX / fx["files"]["demucs"]
    _, _, mix = signal
    assert torch.equal(codec.encode_mixed(mix), cases["encode"]["codes_mixed"][0, 0])


def test_identical_musicfm_copies_are_shared(tmp_path, fx):
    from safetensors.torch import load_file, save_file
    from core.codec import OfficialCodec
    sep = load_file(str(FIX / fx["files"]["septoken"]))
    mixed = load_file(str(FIX / fx["files"]["mixed"]))
    mixed.update({k: v for k, v in sep.items() if k.startswith("bestrq.model.")})
    f = tmp_path / "model_2_fixed.safetensors"
    save_file(mixed, str(f))
    codec = OfficialCodec.from_files(mixed=f, septoken=FIX / fx["files"]["septoken"], hparams=fx)
    assert codec.mixed_tokenizer().encoder is codec.sep_tokenizer().encoder
    assert codec.mixed_tokenizer().heads["mixed"][1] is not codec.sep_tokenizer().heads["vocal"][1]
    # the fixture's own files hold two different (random) copies: two modules
    own = OfficialCodec.from_runtime(FIX, hparams=fx)
    assert own.mixed_tokenizer().encoder is not own.sep_tokenizer().encoder


def test_bf16_runs_close_to_fp32(fx, cases, signal):
    """bf16 is an option for the big modules (fp32 stays the exact reference): most codes still agree."""
    from core.codec import OfficialCodec
    codec = OfficialCodec.from_runtime(FIX, hparams=fx, dtype=torch.bfloat16)
    _, _, mix = signal
    codes = codec.encode_mixed(mix)
    assert (codes == cases["encode"]["codes_mixed"][0, 0]).float().mean() > 0.8
    u = cases["decode"]["estimator_unit"]
    with torch.no_grad():
        out = codec.flow().estimator(u["x"].bfloat16(), u["t"]).float()
    assert (out - u["out"]).abs().max() < 0.1
