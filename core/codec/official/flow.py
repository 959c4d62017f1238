"""Token -> latent flow decoder: conditioning from the two VQs, Euler sampling with classifier-free guidance,
and the 40-s window / 10-s in-context continuation scheme of the official decoder."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import torch

from core.codec.official.estimator import FlowEstimator
from core.weights import WeightFileError, get
from core.codec.official.quantizer import FactorizedVQ

MASK_IN_CONTEXT, MASK_GENERATE = 1, 2
RENDER_MARGIN = 32  # latent frames rendered past the output's end (VAE receptive-field edge)


class FlowDecoder(torch.nn.Module):
    def __init__(self, sd: Mapping[str, torch.Tensor], hp_est: Mapping, hp_dec: Mapping, path: str | Path,
                 what: str):
        super().__init__()
        self.estimator = FlowEstimator.from_state_dict(sd, hp_est, path, what)
        self.vq_vocal = FactorizedVQ(sd, "rvq_bestrq_emb.quantizers.0.", path, what)
        self.vq_bgm = FactorizedVQ(sd, "rvq_bestrq_bgm_emb.quantizers.0.", path, what)
        self.register_buffer("mask_emb", get(sd, "mask_emb.weight", path, what, ndim=2).clone())
        counts = get(sd, "normfeat.counts", path, what).double().reshape(-1)[0]
        sum_x = get(sd, "normfeat.sum_x", path, what).double()
        sum_x2 = get(sd, "normfeat.sum_x2", path, what).double()
        self.latent_dim = sum_x.shape[0]
        if counts < 10:  # the reference falls back to identity statistics before it has seen data
            mean, std = torch.zeros_like(sum_x), torch.ones_like(sum_x)
        else:
            mean = sum_x / counts
            std = torch.sqrt(torch.clamp(sum_x2 / counts - mean ** 2, min=0))
        self.register_buffer("lat_mean", mean.float())
        self.register_buffer("lat_std", std.float())
        self.counts = float(counts)
        need = self.mask_emb.shape[1] + 2 * self.latent_dim + self.vq_vocal.w_out.shape[0] + self.vq_bgm.w_out.shape[0]
        if need != self.estimator.d:
            raise WeightFileError(f"{what} {path}: estimator width {self.estimator.d} != mask {self.mask_emb.shape[1]}"
                                  f" + 2x latent {self.latent_dim} + vocal/bgm conditioning widths ({need})")
        self.num_steps = int(hp_dec.get("num_steps", 10))
        self.guidance = float(hp_dec.get("guidance_scale", 1.5))
        self.sigma_min = float(hp_dec.get("sigma_min", 1e-4))
        self.window = int(hp_dec.get("window", 1000))
        self.hop = int(hp_dec.get("hop", 750))
        self.overlap = int(hp_dec.get("overlap", 250))
        self.eval()

    @property
    def device(self):
        return self.mask_emb.device

    @torch.no_grad()
    def sample_window(self, cv: torch.Tensor, cb: torch.Tensor, context: Optional[torch.Tensor],
                      noise: torch.Tensor, num_steps: Optional[int] = None,
                      guidance: Optional[float] = None) -> torch.Tensor:
        """One window. cv, cb: long [W]; context: denormalised latents [64, n_ic] or None; noise [W, 64].
        -> denormalised latents [64, W]."""
        dev, dt = self.device, self.estimator.wpe.weight.dtype
        steps = self.num_steps if num_steps is None else num_steps
        g = self.guidance if guidance is None else guidance
        w = cv.shape[0]
        mu = torch.cat([self.vq_vocal.decode(cv.to(dev)[None]), self.vq_bgm.decode(cb.to(dev)[None])], dim=-1)
        n_ic = 0 if context is None else context.shape[-1]
        inc = torch.zeros(1, w, self.latent_dim, device=dev)
        if n_ic:
            inc[0, :n_ic] = (context.to(dev).t() - self.lat_mean) / torch.clamp(self.lat_std, min=1e-12)
        mask = torch.full((w,), MASK_GENERATE, dtype=torch.long, device=dev)
        mask[:n_ic] = MASK_IN_CONTEXT
        m_emb = self.mask_emb[mask][None]
        eps = noise.to(dev).float().reshape(1, w, self.latent_dim)
        x = eps.clone()
        cond_c = torch.cat([m_emb, inc, mu], dim=-1)
        cond_u = torch.cat([m_emb, inc, torch.zeros_like(mu)], dim=-1)
        ts = torch.linspace(0, 1, steps + 1, device=dev)
        for i in range(steps):
            t = ts[i]
            if n_ic:
                x[:, :n_ic] = (1 - (1 - self.sigma_min) * t) * eps[:, :n_ic] + t * inc[:, :n_ic]
            inp = torch.cat([torch.cat([cond_u, x], dim=-1), torch.cat([cond_c, x], dim=-1)], dim=0)
            v = self.estimator(inp.to(dt), t.reshape(1).expand(2)).float()[..., -self.latent_dim:]
            v = v[:1] + g * (v[1:] - v[:1])
            x = x + (ts[i + 1] - ts[i]) * v
        if n_ic:
            x[:, :n_ic] = inc[:, :n_ic]
        return (x[0] * self.lat_std + self.lat_mean).t()


def tile_to(codes: torch.Tensor, n: int) -> torch.Tensor:
    """Repeat-by-doubling until at least n frames, then cut (the reference's padding)."""
    while codes.shape[-1] < n:
        codes = torch.cat([codes, codes], dim=-1)
    return codes[..., :n]


def plan_windows(n: int, window: int, hop: int, overlap: int) -> tuple[int, list[int]]:
    """-> (padded length, window starts) for n code frames (prompt included)."""
    if n < window:
        n = window
    if (n - overlap) % hop:
        n = math.ceil((n - overlap) / hop) * hop + overlap
    starts = list(range(0, n - hop, hop))
    return n, starts


def crossfade_concat(chunks: Sequence[torch.Tensor], overlap: int) -> torch.Tensor:
    """Linear crossfade of consecutive [2, n] chunks over `overlap` samples (ramp computed in float64)."""
    out = chunks[0]
    for a in chunks[1:]:
        r = torch.linspace(0, 1, overlap, dtype=torch.float64)
        head = out[:, -overlap:].double() * (1 - r) + a[:, :overlap].double() * r
        out = torch.cat([out[:, :-overlap], head.to(out.dtype), a[:, overlap:]], dim=-1)
    return out


def decode_codes(flow: FlowDecoder, render: Callable[[torch.Tensor], torch.Tensor], cv: torch.Tensor,
                 cb: torch.Tensor, n_prompt: int = 0, context: Optional[torch.Tensor] = None,
                 noise: Optional[Sequence[torch.Tensor]] = None, generator: Optional[torch.Generator] = None,
                 hop_samples: int = 1920, sample_rate: int = 48000,
                 progress: Optional[Callable[[str, int, int], None]] = None, **sample_kw) -> torch.Tensor:
    """cv, cb long [T] (prompt codes first); context: prompt latents [64, n_ic] -> waveform [2, total].

    Each window's latents are rendered to audio and crossfaded as soon as they exist; only the last window's
    latents are kept for the continuation, so memory does not grow with the song beyond the output audio."""
    n = cv.shape[-1]
    # the reference's float formula (one sample short of (n - P) * 1920 for some n): kept for length parity
    total = int((n - n_prompt) / 100 * 4 * sample_rate)
    padded, starts = plan_windows(n, flow.window, flow.hop, flow.overlap)
    cv, cb = tile_to(cv, padded), tile_to(cb, padded)
    ov_samples = flow.overlap * hop_samples
    out: Optional[torch.Tensor] = None
    prev = None
    for k, s in enumerate(starts):
        ic = context if k == 0 else prev[:, -flow.overlap:]
        if noise is not None:
            if k >= len(noise):
                raise ValueError(f"noise has {len(noise)} windows, decoding needs {len(starts)}")
            z = noise[k]
        else:
            z = torch.randn(flow.window, flow.latent_dim, generator=generator)
        lat = flow.sample_window(cv[s:s + flow.window], cb[s:s + flow.window], ic,
                                 z.reshape(flow.window, flow.latent_dim), **sample_kw)
        prev = lat
        n_ctx = context.shape[-1] if context is not None else 0
        if k == 0 and n_ctx:
            lat = lat[:, n_ctx:]
        if k == len(starts) - 1:
            # the last window is often mostly tiling padding: render only the frames the output keeps plus a
            # margin wider than the VAE decoder's edge effects (as in chunked decoding)
            first = 0 if k == 0 else s - n_ctx
            need = -(-total // hop_samples) - first + RENDER_MARGIN
            lat = lat[:, :max(need, flow.overlap + 1)]
        audio = render(lat).float().cpu()
        out = audio if out is None else crossfade_concat([out, audio], ov_samples)
        if progress is not None:
            progress("decode", k + 1, len(starts))
    return out[:, :total]
