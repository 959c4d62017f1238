"""Official codec speed: encode / decode real-time factors, and FLOPs per second of audio at the official sizes.

Measured sizes: the tiny random-weight files in ../shared/fixtures/songgen-codec-tiny (conformer 32 wide x 4
layers, estimator 216 wide x 2 layers, VAE 4 channels, htdemucs 8 channels), on
  (a) the fixture's 6-s synthetic song with its stems given (no Demucs), and
  (b) the 10-s real song ../shared/data/sample_prompt_audio.wav, stems from Demucs.
RTF = wall time / audio duration (< 1 is faster than real time). Models are loaded and warmed up before
timing. The machine's other load is not controlled: expect run-to-run spread on a shared CPU.
Decode renders vocal+bgm tokens with 10 Euler steps, CFG 1.5, chunked VAE decoding.

FLOPs (multiply-add = 2 FLOPs; official shapes; T = 1000 frames per 40-s window):
  conv front end   2*9*T*(4*2*C + 4*C^2 + 3*C^2) + 2*T*(32*C)*D        C = 512 channels, mel 128 bands, 4T frames
  conformer layer  8*T*D*F + 14*T*D^2 + 4*T^2*D + 2*T*D*K                D 1024, F 4096, depthwise K 31
  VQ               2*T*D*d + 2*T*d*V                                      d 32, V 16384
  encode / window  3 x front end + (6 + 7 + 3) layers + 3 VQ (mixed layer 6, vocal 7, bgm 3); 1 window per 40 s
  estimator pass   2 (CFG) * [L*(8*T*E^2 + 4*T^2*E + 4*T*E*G) + 2*T*E^2 + 2*(512*E + 7*E^2)]   E 2200, G 4400, L 16
  VAE decoder      per latent frame: sum over convs of 2*Cin*Cout*k*(output rate), conv-transpose 2*Cin*Cout*k*(input
                   rate); times 128/96 for chunked decoding (chunk 128, hop 96)
  decode / second  (steps * estimator pass + 1000 * VAE frame) / 30 s   (a 40-s window advances 30 s)
The formulas are checked against torch.utils.flop_counter on the tiny modules (printed "check" lines).

    python bench/codec.py [--steps 10] [--skip-demucs]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
FIX = SHARED / "fixtures" / "songgen-codec-tiny"
SONG = SHARED / "data" / "sample_prompt_audio.wav"

OFFICIAL = dict(C=512, D=1024, F=4096, K=31, d=32, V=16384, E=2200, G=4400, L=16, T=1000,
                layers=(6, 7, 3), vae_channels=128, vae_mults=(1, 2, 4, 8, 16), vae_strides=(2, 4, 4, 6, 10),
                latent=64, steps=10)


def frontend_flops(T, C, D, bands=128):
    # block 0 at (bands/2 x 2T): conv1 + shortcut conv3 (1->C) and conv2 (C->C); block 1 at (bands/4 x T): 3 C->C
    b0 = 2 * 9 * (bands // 2) * (2 * T) * (2 * C + C * C)
    b1 = 2 * 9 * (bands // 4) * T * (3 * C * C)
    return b0 + b1 + 2 * T * (C * bands // 4) * D


def conformer_layer_flops(T, D, F, K):
    return 8 * T * D * F + 14 * T * D * D + 4 * T * T * D + 2 * T * D * K


def vq_flops(T, D, d, V):
    return 2 * T * D * d + 2 * T * d * V


def estimator_pass_flops(T, E, G, L, cfg=2):
    # blocks + proj_out, plus the timestep MLP (512 -> E -> E) and adaLN table (E -> 6E), once per sample
    return cfg * (L * (8 * T * E * E + 4 * T * T * E + 4 * T * E * G) + 2 * T * E * E
                  + 2 * (512 * E + E * E + 6 * E * E))


def vae_decoder_frame_flops(ch, mults, strides, latent, out_ch=2):
    mults = [1] + list(mults)
    f = 2 * latent * ch * mults[-1] * 7                       # conv1 at 1 sample per frame
    rate = 1
    for i, s in enumerate(reversed(strides)):
        cin, cout = ch * mults[len(strides) - i], ch * mults[len(strides) - i - 1]
        f += 2 * cin * cout * 2 * s * rate                     # conv-transpose, per input sample
        rate *= s
        f += 3 * (2 * cout * cout * 7 + 2 * cout * cout) * rate  # 3 residual units (k7 dilated + k1)
    return f + 2 * ch * out_ch * 7 * rate


def official_flops(steps):
    o = OFFICIAL
    T = o["T"]
    fe = frontend_flops(T, o["C"], o["D"])
    layer = conformer_layer_flops(T, o["D"], o["F"], o["K"])
    enc_window = 3 * fe + sum(o["layers"]) * layer + 3 * vq_flops(T, o["D"], o["d"], o["V"])
    est = estimator_pass_flops(T, o["E"], o["G"], o["L"])
    vae = vae_decoder_frame_flops(o["vae_channels"], o["vae_mults"], o["vae_strides"], o["latent"])
    dec_window = steps * est + T * vae * 128 / 96
    return dict(frontend=fe, conformer_layer=layer, encode_window=enc_window, estimator_pass=est,
                vae_frame=vae, decode_window=dec_window, encode_per_s=enc_window / 40, decode_per_s=dec_window / 30)


def counted(fn):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    # the math attention backend, because the counter does not see the fused CPU flash-attention kernel
    with FlopCounterMode(display=False) as fc, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        fn()
    return fc.get_total_flops()


def check_formulas(codec):
    """Compare the analytic formulas with torch's FLOP counter on the tiny modules."""
    enc = codec.mixed_tokenizer().encoder
    C = enc.conv.conv[0].conv1.out_channels
    D = enc.conv.linear.out_features
    T = 100
    mel = torch.randn(1, 128, 4 * T)
    layer = enc.conformer.layers[0]
    F = layer.ffn1.intermediate_dense.out_features
    K = layer.conv_module.depthwise_conv.kernel_size[0]
    h = torch.randn(1, T, D)
    pe = enc.conformer.embed_positions(h)
    flow = codec.flow()
    est = flow.estimator
    E, L = est.d, len(est.h)
    G = est.h[0].mlp.c_fc.weight.shape[1]
    x = torch.randn(2, T, E)
    vae = codec.vae()
    vcfg = vae.model.config
    z = torch.randn(1, vcfg.decoder_input_channels, 4)
    rows = [
        ("conv front end", frontend_flops(T, C, D), counted(lambda: enc.conv(mel))),
        ("conformer layer", conformer_layer_flops(T, D, F, K),
         counted(lambda: layer(h, relative_position_embeddings=pe))),
        ("estimator pass", estimator_pass_flops(T, E, G, L), counted(lambda: est(x, torch.rand(2)))),
        ("VAE decoder x4 frames", 4 * vae_decoder_frame_flops(vcfg.decoder_channels, vcfg.channel_multiples,
                                                              vcfg.downsampling_ratios, vcfg.decoder_input_channels),
         counted(lambda: vae.model.decoder(z))),
    ]
    for name, formula, count in rows:
        print(f"  check {name:<24} formula {formula:>14,.0f}  torch counter {count:>14,.0f}  "
              f"ratio {formula / max(count, 1):.3f}")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--skip-demucs", action="store_true", help="skip case (b) (real song through Demucs)")
    args = ap.parse_args()

    from core.codec import OfficialCodec
    fx = json.loads((FIX / "fixture.json").read_text())
    codec = OfficialCodec.from_runtime(FIX, hparams=fx, progress=False)
    print(f"device cpu, torch {torch.__version__}, {torch.get_num_threads()} threads; weights: {FIX.name} (tiny)")
    # load everything before timing
    codec.mixed_tokenizer(), codec.sep_tokenizer(), codec.flow(), codec.vae()

    cases = torch.load(FIX / "cases.pt", weights_only=True)
    vocal, bgm = cases["signal"]["vocal"], cases["signal"]["bgm"]
    mix = vocal + bgm
    dur = mix.shape[-1] / 48000
    # warm-up (first calls build CPU kernels / primitives), not timed
    codec.decode(codec.encode(mix[:, :48000], vocal=vocal[:, :48000], bgm=bgm[:, :48000]), num_steps=1, seed=0)
    codes, t_enc = timed(lambda: codec.encode(mix, vocal=vocal, bgm=bgm))
    (_, _), t_dec = timed(lambda: codec.decode(codes, num_steps=args.steps, seed=0))
    print(f"(a) {dur:.0f}-s synthetic song, stems given: encode {t_enc:.2f} s (RTF {t_enc / dur:.3f}), "
          f"decode {t_dec:.2f} s (RTF {t_dec / dur:.3f}, {args.steps} steps)")

    if not args.skip_demucs and SONG.is_file():
        import soundfile as sf
        data, sr = sf.read(str(SONG), dtype="float32", always_2d=True)
        song = torch.from_numpy(data.T.copy())
        dur = song.shape[-1] / sr
        codec.separator()
        (v, b), t_sep = timed(lambda: codec.separate(song))
        codes, t_enc = timed(lambda: codec.encode(song, vocal=v, bgm=b))
        (_, _), t_dec = timed(lambda: codec.decode(codes, num_steps=args.steps, seed=0))
        print(f"(b) {dur:.0f}-s real song: Demucs {t_sep:.2f} s (RTF {t_sep / dur:.3f}), tokenizers {t_enc:.2f} s "
              f"(encode incl. Demucs RTF {(t_sep + t_enc) / dur:.3f}), decode {t_dec:.2f} s (RTF {t_dec / dur:.3f})")

    f = official_flops(args.steps)
    print(f"official sizes, FLOPs (see the formulas in this file's docstring), {args.steps} Euler steps:")
    print(f"  conv front end / window {f['frontend'] / 1e12:.3f} TFLOP; conformer layer {f['conformer_layer'] / 1e12:.4f}"
          f" TFLOP; estimator pass (CFG batch 2) {f['estimator_pass'] / 1e12:.3f} TFLOP; VAE decoder "
          f"{f['vae_frame'] / 1e9:.2f} GFLOP per latent frame")
    print(f"  encode (mixed + vocal + bgm, 40-s windows): {f['encode_per_s'] / 1e9:.1f} GFLOP per second of audio")
    print(f"  decode (estimator + chunked VAE, 30 s per window): {f['decode_per_s'] / 1e9:.1f} GFLOP per second "
          f"of audio")
    check_formulas(codec)


if __name__ == "__main__":
    main()
