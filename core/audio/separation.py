"""Vocal / accompaniment separation with Demucs v4 (htdemucs) from a local checkpoint, fully offline.

The official runtime ships `third_party/demucs/ckpt/htdemucs.pth` as a plain state dict; the PyPI `demucs`
package supplies the model class and the chunked `apply_model`. Separation follows the official procedure:
44.1 kHz stereo, normalised by the mono reference's mean/std, one random time shift (seeded here), chunks of
the model's training segment with 25 % overlap (so memory stays bounded for full-length songs).
"""
from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from core.errors import StudioError

DEMUCS_RATE = 44100
CKPT_RELATIVE = Path("third_party/demucs/ckpt/htdemucs.pth")

# The kwargs the official loader builds HTDemucs with (demucs' htdemucs recipe).
OFFICIAL_HTDEMUCS_KWARGS: dict[str, Any] = dict(
    sources=["drums", "bass", "other", "vocal"], audio_channels=2, samplerate=DEMUCS_RATE,
    segment=Fraction(39, 5), channels=48, channels_time=None, growth=2, nfft=4096, wiener_iters=0, end_iters=0,
    wiener_residual=False, cac=True, depth=4, rewrite=True, multi_freqs=[], multi_freqs_depth=3, freq_emb=0.2,
    emb_scale=10, emb_smooth=True, kernel_size=8, time_stride=2, stride=4, context=1, context_enc=0,
    norm_starts=4, norm_groups=4, dconv_mode=3, dconv_depth=2, dconv_comp=8, dconv_init=1e-3,
    bottom_channels=512, t_layers=5, t_emb="sin", t_hidden_scale=4.0, t_heads=8, t_dropout=0.02,
    t_max_positions=10000, t_norm_in=True, t_norm_in_group=False, t_group_norm=False, t_norm_first=True,
    t_norm_out=True, t_max_period=10000.0, t_weight_decay=0.0, t_lr=None, t_layer_scale=True, t_gelu=True,
    t_weight_pos_embed=1.0, t_sin_random_shift=0, t_cape_mean_normalize=True, t_cape_augment=True,
    t_cape_glob_loc_scale=[5000.0, 1.0, 1.4], t_sparse_self_attn=False, t_sparse_cross_attn=False,
    t_mask_type="diag", t_mask_random_seed=42, t_sparse_attn_window=400, t_global_window=100, t_sparsity=0.95,
    t_auto_sparsity=False, t_cross_first=False, rescale=0.1,
)


class SeparationError(StudioError, RuntimeError):
    """The Demucs checkpoint is missing or does not match the model configuration."""
    code = "separation"


def find_demucs_checkpoint(runtime_root: str | Path | None) -> Optional[Path]:
    """The runtime's htdemucs.pth, or None when the runtime root does not have one."""
    if not runtime_root:
        return None
    p = Path(runtime_root) / CKPT_RELATIVE
    return p if p.is_file() else None


def _read_yaml_kwargs(yaml_path: str | Path) -> dict:
    import yaml
    p = Path(yaml_path)
    if not p.is_file():
        raise SeparationError(f"Demucs yaml not found: {p}")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, Mapping):
        raise SeparationError(f"Demucs yaml {p} is not a mapping")
    # the official htdemucs.yaml only names the model (`models: ['htdemucs']`); explicit kwargs are honoured
    out = dict(data.get("kwargs") or {})
    if "segment" in data:
        out["segment"] = data["segment"]
    return out


def _kwargs_from_shapes(sd: Mapping[str, torch.Tensor]) -> dict:
    """The widths the checkpoint's shapes reveal (so the same loader serves the official and smaller files):
    `channels` = first encoder conv's outputs, `bottom_channels` = the transformer-side channel upsampler's
    outputs (absent when the model has none)."""
    out: dict[str, Any] = {}
    w = sd.get("encoder.0.conv.weight")
    if isinstance(w, torch.Tensor) and w.dim() >= 1:
        out["channels"] = int(w.shape[0])
    up = sd.get("channel_upsampler.weight")
    out["bottom_channels"] = int(up.shape[0]) if isinstance(up, torch.Tensor) else 0
    n_layers = {k.split(".")[2] for k in sd if k.startswith("crosstransformer.layers.")}
    if n_layers:
        out["t_layers"] = len(n_layers)  # one entry per layer in each branch (layers / layers_t)
    return out


class Separator:
    def __init__(self, model, device: str = "cpu", seed: Optional[int] = 0):
        self.model = model.to(device).eval()
        self.device = device
        self.seed = seed
        self.sources = list(model.sources)
        if "vocal" in self.sources:
            self.vocal_index = self.sources.index("vocal")
        elif "vocals" in self.sources:
            self.vocal_index = self.sources.index("vocals")
        else:
            raise SeparationError(f"Demucs model has no vocal source (sources {self.sources})")

    @classmethod
    def from_checkpoint(cls, pth_path: str | Path, yaml_path: str | Path | None = None,
                        kwargs: Optional[Mapping[str, Any]] = None, device: str = "cpu",
                        seed: Optional[int] = 0) -> "Separator":
        """Build HTDemucs with the official kwargs, the widths the checkpoint's shapes reveal, then the yaml's
        and finally `kwargs` (later wins), and load the plain state dict strictly."""
        from demucs.htdemucs import HTDemucs
        p = Path(pth_path)
        if not p.is_file():
            raise SeparationError(f"Demucs checkpoint not found: {p} (expected <runtime>/{CKPT_RELATIVE})")
        try:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise SeparationError(f"cannot read Demucs checkpoint {p}: {type(exc).__name__}: {exc}") from exc
        if isinstance(sd, Mapping) and "state" in sd and isinstance(sd["state"], Mapping):
            sd = sd["state"]  # demucs "package" files keep the weights under 'state'
        if not isinstance(sd, Mapping):
            raise SeparationError(f"Demucs checkpoint {p} is not a state dict")
        kw = dict(OFFICIAL_HTDEMUCS_KWARGS)
        kw.update(_kwargs_from_shapes(sd))
        if yaml_path is not None:
            kw.update(_read_yaml_kwargs(yaml_path))
        kw.update(kwargs or {})
        model = HTDemucs(**kw)
        from core.weights import load_strict

        load_strict(model, sd, p, "Demucs checkpoint", error=SeparationError, hint=" (check the HTDemucs kwargs)")
        return cls(model, device=device, seed=seed)

    @property
    def samplerate(self) -> int:
        return int(self.model.samplerate)

    def draw_shift(self) -> int:
        """The random shift (0 .. 0.5 s) demucs' shifts=1 would draw, from a private seeded RNG."""
        rng = random.Random(self.seed) if self.seed is not None else random.Random()
        return rng.randint(0, int(0.5 * self.samplerate))

    @torch.no_grad()
    def apply(self, x: torch.Tensor, shift: Optional[int] = None, overlap: float = 0.25,
              progress: bool = False) -> torch.Tensor:
        """Normalised [B, 2, n] at the model rate -> sources [B, S, 2, n]. `shift` None = no time shift
        (shifts=0); an int replays demucs' shifts=1 with that offset in samples."""
        from demucs.apply import TensorChunk, apply_model
        x = x.to(self.device)
        if shift is None:
            return apply_model(self.model, x, shifts=0, split=True, overlap=overlap, progress=progress,
                               device=self.device)
        length = x.shape[-1]
        max_shift = int(0.5 * self.samplerate)
        if not 0 <= shift <= max_shift:
            raise ValueError(f"shift must be in 0..{max_shift}")
        padded = TensorChunk(x).padded(length + 2 * max_shift)
        # a TensorChunk view (not a slice) so segment padding may read the neighbouring real samples
        shifted = TensorChunk(padded, shift, length + max_shift - shift)
        res = apply_model(self.model, shifted, shifts=0, split=True, overlap=overlap, progress=progress,
                          device=self.device)
        return res[..., max_shift - shift:]

    @torch.no_grad()
    def separate_sources(self, mix: torch.Tensor, sample_rate: int, shift: Optional[int] = -1,
                         progress: bool = False) -> torch.Tensor:
        """float [2, N] (or [N] mono) at `sample_rate` -> all sources [S, 2, N] at `sample_rate`.
        shift -1 = draw it from the seeded RNG (the official shifts=1), None = no shift."""
        import torchaudio.functional as AF
        wav = mix.float()
        if wav.dim() == 1:
            wav = wav[None]
        if wav.shape[0] == 1:
            wav = wav.expand(2, -1)
        if wav.dim() != 2 or wav.shape[0] != 2:
            raise ValueError(f"expected a [2, N] waveform, got {list(mix.shape)}")
        n = wav.shape[-1]
        x = AF.resample(wav, sample_rate, self.samplerate) if sample_rate != self.samplerate else wav
        ref = x.mean(0)
        mean, std = ref.mean(), ref.std()
        std = std if std > 0 else torch.ones_like(std)
        xn = (x - mean) / std
        if shift == -1:
            shift = self.draw_shift()
        out = self.apply(xn[None], shift=shift, progress=progress)[0].cpu() * std + mean
        if sample_rate != self.samplerate:
            out = AF.resample(out, self.samplerate, sample_rate)
        if out.shape[-1] < n:
            out = torch.nn.functional.pad(out, (0, n - out.shape[-1]))
        return out[..., :n]

    def separate(self, mix: torch.Tensor, sample_rate: int, bgm_mode: str = "stems",
                 progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """float [2, N] -> (vocal [2, N], bgm [2, N]) at the input rate.
        bgm_mode "stems" = drums + bass + other (the reference's token extraction), "mix_minus_vocal" = mix -
        vocal (the reference's prompt separator)."""
        if bgm_mode not in ("stems", "mix_minus_vocal"):
            raise ValueError(f"bgm_mode must be 'stems' or 'mix_minus_vocal', got {bgm_mode!r}")
        src = self.separate_sources(mix, sample_rate, progress=progress)
        vocal = src[self.vocal_index]
        if bgm_mode == "stems":
            bgm = sum(src[i] for i in range(src.shape[0]) if i != self.vocal_index)
        else:
            m = mix.float()
            bgm = (m if m.dim() == 2 and m.shape[0] == 2 else vocal * 0 + m.reshape(1, -1)) - vocal
        return vocal, bgm
