"""The Stable Audio (Oobleck) VAE through `diffusers.AutoencoderOobleck`, loaded from the stable-audio-tools
checkpoint by renaming keys. Decoding can be tiled so a 40-s window never needs full-resolution activations
for the whole window at once."""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from core.weights import WeightFileError, read_state_dict

WHAT = "VAE checkpoint"


def _rename(key: str) -> Optional[str]:
    """stable-audio-tools Oobleck key -> diffusers AutoencoderOobleck key (None = not part of the model)."""
    key = key.replace("parametrizations.weight.original0", "weight_g")
    key = key.replace("parametrizations.weight.original1", "weight_v")
    m = re.match(r"(encoder|decoder)\.layers\.(\d+)\.(.*)$", key)
    if not m:
        return None
    side, i, rest = m.group(1), int(m.group(2)), m.group(3)
    unit_parts = ("snake1", "conv1", "snake2", "conv2")
    if i == 0:
        return f"{side}.conv1.{rest}"
    if i == 6:
        return f"{side}.snake1.{rest}"
    if i == 7:
        return f"{side}.conv2.{rest}"
    b = i - 1
    m2 = re.match(r"layers\.(\d+)\.(.*)$", rest)
    if not m2:
        return None
    j, tail = int(m2.group(1)), m2.group(2)
    if side == "encoder":
        if j in (0, 1, 2):
            m3 = re.match(r"layers\.(\d)\.(.*)$", tail)
            return f"encoder.block.{b}.res_unit{j + 1}.{unit_parts[int(m3.group(1))]}.{m3.group(2)}" if m3 else None
        return {3: f"encoder.block.{b}.snake1.{tail}", 4: f"encoder.block.{b}.conv1.{tail}"}.get(j)
    if j in (2, 3, 4):
        m3 = re.match(r"layers\.(\d)\.(.*)$", tail)
        return f"decoder.block.{b}.res_unit{j - 1}.{unit_parts[int(m3.group(1))]}.{m3.group(2)}" if m3 else None
    return {0: f"decoder.block.{b}.snake1.{tail}", 1: f"decoder.block.{b}.conv_t1.{tail}"}.get(j)


def read_vae_config(path: str | Path) -> tuple[dict, int]:
    """-> (AutoencoderOobleck kwargs, encoder output width)."""
    p = Path(path)
    if not p.is_file():
        raise WeightFileError(f"VAE config not found: {p}")
    try:
        cfg = json.loads(p.read_text())
        enc, dec = cfg["model"]["encoder"]["config"], cfg["model"]["decoder"]["config"]
        return dict(encoder_hidden_size=int(enc["channels"]), downsampling_ratios=list(enc["strides"]),
                    channel_multiples=list(enc["c_mults"]), decoder_channels=int(dec["channels"]),
                    decoder_input_channels=int(dec["latent_dim"]), audio_channels=int(cfg.get("audio_channels", 2)),
                    sampling_rate=int(cfg.get("sample_rate", 48000))), int(enc["latent_dim"])
    except (ValueError, KeyError, TypeError) as exc:
        raise WeightFileError(f"VAE config {p} is not a stable-audio-tools Oobleck autoencoder config "
                              f"({type(exc).__name__}: {exc})") from exc


class OobleckVAE(torch.nn.Module):
    def __init__(self, config_path: str | Path, ckpt_path: str | Path):
        super().__init__()
        from diffusers import AutoencoderOobleck
        kwargs, enc_out = read_vae_config(config_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # diffusers still uses the legacy weight_norm
            self.model = AutoencoderOobleck(**kwargs)
            conv2 = self.model.encoder.conv2
            if conv2.out_channels != enc_out:
                # diffusers ties the encoder's output width (2 x latent) to its base width; they coincide in the
                # official config (128) but not in general, so rebuild the last conv at the configured width
                self.model.encoder.conv2 = torch.nn.utils.weight_norm(
                    torch.nn.Conv1d(conv2.in_channels, enc_out, kernel_size=3, padding=1))
        self.hop = 1
        for r in kwargs["downsampling_ratios"]:
            self.hop *= r
        raw = read_state_dict(ckpt_path, WHAT)
        own = self.model.state_dict()
        mapped: dict[str, torch.Tensor] = {}
        for k, v in raw.items():
            nk = _rename(k)
            if nk is None:
                continue
            if nk not in own:
                raise WeightFileError(f"{WHAT} {ckpt_path}: tensor '{k}' does not fit the config {config_path}")
            mapped[nk] = v.reshape(own[nk].shape) if v.numel() == own[nk].numel() else v
        inverse = {}
        for k in raw:
            nk = _rename(k)
            if nk is not None:
                inverse[nk] = k
        for k, v in own.items():
            if k not in mapped:
                raise WeightFileError(f"{WHAT} {ckpt_path} is missing the tensor for '{k}' "
                                      f"(stable-audio-tools name expected under encoder.layers/decoder.layers)")
            if tuple(mapped[k].shape) != tuple(v.shape):
                raise WeightFileError(f"{WHAT} {ckpt_path}: tensor '{inverse[k]}' has shape "
                                      f"{list(raw[inverse[k]].shape)}, expected {list(v.shape)} from {config_path}")
        self.model.load_state_dict(mapped, strict=True)
        self.eval()

    @property
    def device(self):
        return next(self.parameters()).device

    @torch.no_grad()
    def encode_moments(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, 2, N] -> encoder output [B, 2*latent, N/hop] (mean | scale) before the stochastic bottleneck."""
        return self.model.encoder(wav.to(self.device))

    @staticmethod
    def sample(moments: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        mean, scale = moments.chunk(2, dim=1)
        return mean + (F.softplus(scale) + 1e-4) * noise.to(mean)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, chunk: Optional[int] = 128, overlap: int = 32) -> torch.Tensor:
        """[B, latent, T] -> [B, 2, T*hop]. With `chunk`, decode tiles of `chunk` frames overlapping by
        `overlap` and keep each tile's centre (edges trimmed by overlap/2), which differs from an unchunked
        decode only at rounding level (receptive-field edge effects die out within the overlap)."""
        z = z.to(self.device)
        t = z.shape[-1]
        if chunk is None or t <= chunk:
            return self.model.decoder(z)
        hop, trim = chunk - overlap, overlap // 2
        starts = list(range(0, t - chunk, hop)) + [t - chunk]
        pieces, kept = [], 0
        for n, s in enumerate(starts):
            a = self.model.decoder(z[..., s:s + chunk])
            lo = kept
            hi = t if n == len(starts) - 1 else s + chunk - trim
            pieces.append(a[..., (lo - s) * self.hop:(hi - s) * self.hop])
            kept = hi
        return torch.cat(pieces, dim=-1)
