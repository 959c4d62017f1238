"""`OfficialCodec`: SongGeneration's own tokenizers and decoder behind the studio's AudioCodec protocol.

Modules are built lazily (encode needs neither the flow estimator nor the VAE; decode needs no 1rvq file) and
cached per process by file paths + hyperparameters + device/dtype, so repeated codecs share one copy.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch

from core.codec.official.flow import FlowDecoder, decode_codes
from core.weights import WeightFileError, read_state_dict
from core.codec.official.encoder import PREFIX as ENC_PREFIX, MusicFMEncoder
from core.codec.official.quantizer import FactorizedVQ
from core.codec.official.tokenizer import Tokenizer
from core.codec.official.vae import OobleckVAE

log = logging.getLogger(__name__)

# Official hyperparameters that tensor shapes cannot reveal (same layout as the fixture's fixture.json).
OFFICIAL_HPARAMS: dict[str, Any] = {
    "conformer": {"num_attention_heads": 16, "hidden_act": "swish", "position_embeddings_type": "rotary",
                  "rotary_embedding_base": 10000, "layer_norm_eps": 1e-5, "num_conv_pos_embeddings": 128,
                  "num_conv_pos_embedding_groups": 16},
    "layers": {"mixed": 6, "vocal": 7, "bgm": 3},
    "estimator": {"n_head": 20, "layer_norm_epsilon": 1e-5, "activation": "gelu_new"},
    "decode": {"num_steps": 10, "guidance_scale": 1.5, "sigma_min": 1e-4, "window": 1000, "hop": 750,
               "overlap": 250},
    "sample_rate": 48000, "frame_rate": 25, "hop_samples": 1920,
    "demucs": {"kwargs_changed": {}},
}

RUNTIME_FILES = {
    "mixed": "ckpt/model_1rvq/model_2_fixed.safetensors",
    "septoken": "ckpt/model_septoken/model_2.safetensors",
    "vae_config": "ckpt/vae/stable_audio_1920_vae.json",
    "vae_ckpt": "ckpt/vae/autoencoder_music_1320k.ckpt",
    "demucs": "third_party/demucs/ckpt/htdemucs.pth",
}
# what each file is, in the words of a missing-file message
_FILE_WHAT = {"mixed": "mixed-stream tokenizer", "septoken": "vocal/accompaniment tokenizer and decoder",
              "vae_config": "VAE config", "vae_ckpt": "VAE weights", "demucs": "Demucs separation model"}
MIXED_FILE = "model_2_fixed.safetensors"
SEPTOKEN_FILE = "model_2.safetensors"

# Upstream's silence tokens for rendering one track alone (codeclm generate_audio).
SILENT_VOCAL_TOKEN = 3142
SILENT_BGM_TOKEN = 9670

_CACHE: dict[tuple, Any] = {}
_CACHE_LOCK = threading.RLock()  # re-entrant: building one module may fetch another (shared MusicFM)

Progress = Optional[Callable[[str, int, int], None]]


def _merge(base: Mapping, over: Optional[Mapping]) -> dict:
    out = copy.deepcopy(dict(base))
    for k, v in (over or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _decoder_key(key: str) -> bool:
    """Tensors the decoder needs from the septoken file (skips MusicFM, the unused 50257-row `wte`, the
    training-only projection head and HuBERT)."""
    if key.startswith("cfm_wrapper.estimator."):
        return not key.startswith("cfm_wrapper.estimator.wte.")
    return key.startswith(("rvq_bestrq_emb.", "rvq_bestrq_bgm_emb.", "mask_emb.", "normfeat.",
                           "zero_cond_embedding1"))


HPARAMS_FILES = ("codec_hparams.json", "fixture.json")


def hparams_beside(root: Path) -> Optional[dict]:
    """Hyperparameters stored with non-official weight files (same layout as the conformance fixture's
    fixture.json), or None: the official runtime has no such file, so official values apply."""
    for name in HPARAMS_FILES:
        f = Path(root) / name
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except ValueError as exc:
                raise WeightFileError(f"codec hyperparameter file {f} is not valid JSON: {exc}") from exc
            if isinstance(data, dict) and any(k in data for k in ("conformer", "layers", "estimator", "decode")):
                log.info("codec hyperparameters from %s", f)
                return data
    return None


def _cached(key: tuple, build: Callable[[], Any]):
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def clear_cache() -> None:
    """Drop every cached module (frees memory; the next call reloads from disk)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _as_stereo(x: torch.Tensor, name: str) -> torch.Tensor:
    x = torch.as_tensor(x).float()
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() == 1:
        x = x[None]
    if x.dim() != 2 or x.shape[0] not in (1, 2):
        raise ValueError(f"{name} must be float [2, N] (or [N] mono), got shape {list(x.shape)}")
    return x.expand(2, -1) if x.shape[0] == 1 else x


def _tqdm_progress(desc: str):
    bars: dict[str, Any] = {}

    def cb(stage: str, done: int, total: int):
        from tqdm.auto import tqdm
        bar = bars.get(stage)
        if bar is None or bar.total != total:
            bar = bars[stage] = tqdm(total=total, desc=f"{desc} {stage}", unit="window", leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            bars.pop(stage, None)
    return cb


class OfficialCodec:
    """SongGeneration's official codec (Flow1dVAE1rvq + Flow1dVAESeparate + Stable Audio VAE + htdemucs)."""

    id = "songgen-official-1"
    frame_rate = 25
    sample_rate = 48000
    is_demo = False

    def __init__(self, mixed: Optional[Path], septoken: Path, vae_config: Optional[Path],
                 vae_ckpt: Optional[Path], demucs: Optional[Path], hparams: Optional[Mapping] = None,
                 device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
                 progress: Union[None, bool, Callable[[str, int, int], None]] = None, seed: Optional[int] = 0):
        self.files = {"mixed": mixed, "septoken": septoken, "vae_config": vae_config, "vae_ckpt": vae_ckpt,
                      "demucs": demucs}
        self.hp = _merge(OFFICIAL_HPARAMS, hparams)
        self.device = torch.device(device)
        self.dtype = dtype
        self.seed = seed
        if progress is None:  # default: a tqdm bar when someone is watching the terminal
            import sys
            progress = sys.stderr.isatty()
        if progress is True:
            self._progress: Progress = _tqdm_progress("songgen codec")
        else:
            self._progress = progress or None

    # construction -------------------------------------------------------------------------------------
    @classmethod
    def from_files(cls, *, mixed=None, septoken, vae_config=None, vae_ckpt=None, demucs=None, hparams=None,
                   **kw) -> "OfficialCodec":
        """Paths to the five official files (mixed: the 1rvq safetensors; septoken: the vocal/bgm tokenizer +
        decoder; vae_config/vae_ckpt: Stable Audio VAE; demucs: htdemucs.pth). Missing files fail now with
        the file named; tensors are read on first use. `hparams`: dict shaped like the fixture's fixture.json
        (None = official values)."""
        paths = {}
        for name, p in (("mixed", mixed), ("septoken", septoken), ("vae_config", vae_config),
                        ("vae_ckpt", vae_ckpt), ("demucs", demucs)):
            if p is not None and not Path(p).is_file():
                raise WeightFileError(f"{name} file not found: {p}")
            paths[name] = Path(p) if p is not None else None
        return cls(paths["mixed"], paths["septoken"], paths["vae_config"], paths["vae_ckpt"], paths["demucs"],
                   hparams=hparams, **kw)

    @classmethod
    def from_runtime(cls, runtime_root, hparams=None, **kw) -> "OfficialCodec":
        """The official runtime layout: ckpt/model_1rvq/, ckpt/model_septoken/, ckpt/vae/, third_party/demucs/.
        The `ckpt/` level may be omitted (as in the test fixture). With hparams None, a codec_hparams.json or
        fixture.json in the root supplies the non-official hyperparameters; otherwise official values."""
        root = Path(runtime_root)
        if not root.is_dir():
            raise WeightFileError(f"runtime root not found: {root}")
        found = {}
        for name, rel in RUNTIME_FILES.items():
            cands = [root / rel]
            if rel.startswith("ckpt/"):
                cands.append(root / rel[len("ckpt/"):])
            hit = next((c for c in cands if c.is_file()), None)
            if hit is None:
                raise WeightFileError(f"{name} file not found in runtime root {root}: expected {cands[0]}")
            found[name] = hit
        if hparams is None:
            hparams = hparams_beside(root)
        return cls.from_files(hparams=hparams, **found, **kw)

    @staticmethod
    def resolve_files(cfg) -> dict[str, Path]:
        """The five files the official codec needs for a StudioConfig -> {name: path}, or one
        WeightFileError naming every missing file, where it was looked for, and what to do.

        The tokenizers come from paths.audio_tokenizer_path / paths.separate_audio_tokenizer_path when
        set (a file or the folder holding it), else from the runtime folder's layout as released
        (ckpt/model_1rvq/, ckpt/model_septoken/); the VAE and Demucs always from the runtime folder."""
        p = cfg.paths
        root = Path(p.runtime_path).expanduser() if p.runtime_path else None
        explicit = {"mixed": p.audio_tokenizer_path, "septoken": p.separate_audio_tokenizer_path}
        found, missing = {}, []
        for name, rel in RUNTIME_FILES.items():
            filename = Path(rel).name
            if explicit.get(name):
                c = Path(explicit[name]).expanduser()
                cands = [c / filename if c.is_dir() else c]
            elif root is not None:  # the `ckpt/` level may be omitted (as in the test fixture)
                cands = [root / rel] + ([root / rel[len("ckpt/"):]] if rel.startswith("ckpt/") else [])
            else:
                cands = []
            hit = next((c for c in cands if c.is_file()), None)
            if hit is None:
                missing.append(f"{filename} ({_FILE_WHAT[name]}; " +
                               (f"looked at {cands[0]})" if cands else "no runtime folder is set)"))
            found[name] = hit
        if missing:
            where = (f"the SongGeneration runtime folder (paths.runtime_path) is {root}" if root is not None
                     else "no SongGeneration runtime folder (paths.runtime_path) is set")
            raise WeightFileError(
                f"the official codec cannot run: {len(missing)} of its files are missing: {'; '.join(missing)}. "
                f"Now {where}. Set it to the SongGeneration folder as released (it holds ckpt/model_1rvq, "
                "ckpt/model_septoken, ckpt/vae and third_party/demucs), or choose the demo codec "
                "(data.codec: demo) to try the studio without them")
        return found

    @classmethod
    def from_config(cls, cfg, **kw) -> "OfficialCodec":
        """From a `core.config.StudioConfig`: paths.audio_tokenizer_path (1rvq safetensors or its folder),
        paths.separate_audio_tokenizer_path (septoken), paths.runtime_path (ckpt/vae and third_party/demucs);
        data.device ("auto" = cuda when available) and data.seed (Demucs shift) unless given as keywords."""
        files = cls.resolve_files(cfg)
        root = Path(cfg.paths.runtime_path)
        hparams = kw.pop("hparams", None)
        if hparams is None:
            hparams = hparams_beside(root)
        data = getattr(cfg, "data", None)
        if "device" not in kw and data is not None:
            dev = getattr(data, "device", "auto") or "auto"
            kw["device"] = ("cuda" if torch.cuda.is_available() else "cpu") if dev == "auto" else dev
        if "seed" not in kw and data is not None:
            kw["seed"] = int(getattr(data, "seed", 0))
        return cls.from_files(hparams=hparams, **files, **kw)

    # cached modules -----------------------------------------------------------------------------------
    def _key(self, *parts) -> tuple:
        return (*parts, json.dumps(self.hp, sort_keys=True, default=str), str(self.device), str(self.dtype))

    def _need(self, name: str) -> Path:
        p = self.files.get(name)
        if p is None:
            raise WeightFileError(f"the {name} file was not given to OfficialCodec (needed for this operation)")
        return p

    def _encoder_keys(self, key: str) -> bool:
        return key.startswith(("bestrq.model.", "rvq_bestrq_emb.", "rvq_bestrq_bgm_emb."))

    def _musicfm(self, sd: Mapping[str, torch.Tensor], path: Path, what: str) -> MusicFMEncoder:
        """One MusicFM module per distinct set of weights: both official files carry a copy (MusicFM was
        frozen while the tokenizers trained), so identical copies are held once, deep enough for every stream."""
        h = hashlib.sha1()
        for k in sorted(k for k in sd if k.startswith(ENC_PREFIX)):
            t = sd[k].contiguous()
            h.update(k.encode())
            h.update(str(t.dtype).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        depth = max(int(v) for v in self.hp["layers"].values())

        def build():
            enc = MusicFMEncoder(sd, self.hp["conformer"], depth, path, what)
            enc.to(self.device)
            enc.conv.to(self.dtype)
            enc.conformer.to(self.dtype)
            if enc.conformer.embed_positions is not None:
                enc.conformer.embed_positions.float()  # rotary angles in fp32; cast to the activations' dtype
            return enc
        return _cached(self._key("musicfm", h.hexdigest()), build)

    def _tokenizer(self, path: Path, what: str, heads: dict[str, tuple[int, str]]) -> Tokenizer:
        sd = read_state_dict(path, what, keep=self._encoder_keys)
        enc = self._musicfm(sd, path, what)
        tok = Tokenizer(enc, {n: (layer, FactorizedVQ(sd, prefix, path, what)) for n, (layer, prefix) in heads.items()})
        for _, vq in tok.heads.values():
            vq.to(self.device)
        return tok

    def mixed_tokenizer(self) -> Tokenizer:
        path = self._need("mixed")
        heads = {"mixed": (int(self.hp["layers"]["mixed"]), "rvq_bestrq_emb.quantizers.0.")}
        return _cached(self._key("mixed", str(path)), lambda: self._tokenizer(path, "1rvq tokenizer file", heads))

    def sep_tokenizer(self) -> Tokenizer:
        path = self._need("septoken")
        heads = {"vocal": (int(self.hp["layers"]["vocal"]), "rvq_bestrq_emb.quantizers.0."),
                 "bgm": (int(self.hp["layers"]["bgm"]), "rvq_bestrq_bgm_emb.quantizers.0.")}
        return _cached(self._key("septoken-enc", str(path)),
                       lambda: self._tokenizer(path, "septoken tokenizer file", heads))

    def flow(self) -> FlowDecoder:
        path = self._need("septoken")

        def build():
            sd = read_state_dict(path, "septoken tokenizer file", keep=_decoder_key)
            fl = FlowDecoder(sd, self.hp["estimator"], self.hp["decode"], path, "septoken tokenizer file")
            if fl.counts < 100000:
                log.warning("septoken normfeat.counts = %d (< 100000): latent statistics treated as frozen",
                            int(fl.counts))
            fl.to(self.device)
            fl.estimator.to(self.dtype)
            return fl
        return _cached(self._key("septoken-flow", str(path)), build)

    def vae(self) -> OobleckVAE:
        cfg, ckpt = self._need("vae_config"), self._need("vae_ckpt")
        return _cached(self._key("vae", str(cfg), str(ckpt)), lambda: OobleckVAE(cfg, ckpt).to(self.device))

    def separator(self):
        from core.audio.separation import Separator
        path = self._need("demucs")
        kwargs = dict(self.hp.get("demucs", {}).get("kwargs_changed") or {})
        yaml_path = path.with_suffix(".yaml")
        return _cached(self._key("demucs", str(path), self.seed),
                       lambda: Separator.from_checkpoint(path, yaml_path if yaml_path.is_file() else None,
                                                         kwargs=kwargs, device=str(self.device), seed=self.seed))

    # protocol -----------------------------------------------------------------------------------------
    def encode_mixed(self, mix: torch.Tensor) -> torch.Tensor:
        """[2, N] 48 kHz -> long [T] (1rvq tokenizer)."""
        return self.mixed_tokenizer().encode({"mixed": _as_stereo(mix, "mix")}, self._progress)["mixed"]

    def encode_sep(self, vocal: torch.Tensor, bgm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """vocal, bgm [2, N] 48 kHz -> (long [T], long [T]) (septoken tokenizer)."""
        out = self.sep_tokenizer().encode({"vocal": _as_stereo(vocal, "vocal"), "bgm": _as_stereo(bgm, "bgm")},
                                          self._progress)
        return out["vocal"], out["bgm"]

    def separate(self, mix: torch.Tensor, bgm_mode: str = "stems") -> tuple[torch.Tensor, torch.Tensor]:
        return self.separator().separate(_as_stereo(mix, "mix"), self.sample_rate, bgm_mode=bgm_mode)

    def encode(self, mix: torch.Tensor, vocal: Optional[torch.Tensor] = None,
               bgm: Optional[torch.Tensor] = None) -> torch.LongTensor:
        """float [2, N] at 48 kHz (stems optional; None -> Demucs) -> long [3, T] = [mixed, vocal, bgm]."""
        mix = _as_stereo(mix, "mix")
        if (vocal is None) != (bgm is None):
            raise ValueError("give both vocal and bgm stems, or neither (then Demucs separates the mix)")
        if vocal is None:
            vocal, bgm = self.separate(mix)
        mixed = self.encode_mixed(mix)
        cv, cb = self.encode_sep(vocal, bgm)
        t = min(mixed.shape[0], cv.shape[0])
        return torch.stack([mixed[:t], cv[:t], cb[:t]]).long()

    def prompt_latents(self, prompt_vocal: torch.Tensor, prompt_bgm: torch.Tensor,
                       noise: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None):
        """The in-context prompt: (latents [64, n], codes_vocal [T], codes_bgm [T]) from 48 kHz stems.
        Prompts shorter than 30 s use their first 10 s, longer ones 20..30 s (upstream's choice)."""
        pv, pb = _as_stereo(prompt_vocal, "prompt vocal"), _as_stereo(prompt_bgm, "prompt bgm")
        sr = self.sample_rate
        if pv.shape[-1] < 30 * sr:
            pv, pb = pv[:, :10 * sr], pb[:, :10 * sr]
        else:
            pv, pb = pv[:, 20 * sr:30 * sr], pb[:, 20 * sr:30 * sr]
        vae = self.vae()
        moments = vae.encode_moments((pv + pb)[None])
        if noise is None:
            noise = torch.randn(moments.shape[0], moments.shape[1] // 2, moments.shape[2], generator=generator)
        lat = vae.sample(moments, noise.reshape(1, moments.shape[1] // 2, moments.shape[2]))[0]
        cv, cb = self.encode_sep(pv, pb)
        return lat, cv, cb

    def decode(self, tokens: torch.Tensor, prompt: Union[None, torch.Tensor, Sequence[torch.Tensor]] = None,
               noise: Optional[Sequence[torch.Tensor]] = None, *, track: str = "both",
               prompt_noise: Optional[torch.Tensor] = None, seed: Optional[int] = None,
               num_steps: Optional[int] = None, guidance_scale: Optional[float] = None,
               vae_chunk: Optional[int] = 128) -> tuple[torch.Tensor, int]:
        """long [3, T] (mixed row ignored) or [2, T] = [vocal, bgm] -> (float [2, N] at 48 kHz, 48000).

        prompt: None, a [2, n] 48 kHz mix (separated with Demucs) or a (vocal, bgm) pair of [2, n] stems.
        noise: per-window initial noise ([1000, 64] each) to replay the sampler exactly; otherwise drawn from
        a generator seeded with `seed` (or the global RNG when both are None).
        track: "both", "vocal" (bgm tokens replaced by silence) or "bgm" (vocal tokens replaced by silence)."""
        tokens = torch.as_tensor(tokens).long()
        if tokens.dim() == 3 and tokens.shape[1] == 1:
            tokens = tokens[:, 0]
        if tokens.dim() != 2 or tokens.shape[0] not in (2, 3):
            raise ValueError(f"tokens must be [3, T] or [2, T], got {list(tokens.shape)}")
        cv, cb = tokens[-2].clone(), tokens[-1].clone()
        if track not in ("both", "vocal", "bgm"):
            raise ValueError(f"track must be 'both', 'vocal' or 'bgm', got {track!r}")
        if track == "vocal":
            cb[:] = SILENT_BGM_TOKEN
        elif track == "bgm":
            cv[:] = SILENT_VOCAL_TOKEN
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        context, n_prompt = None, 0
        if prompt is not None:
            if isinstance(prompt, torch.Tensor):
                pv, pb = self.separate(prompt, bgm_mode="mix_minus_vocal")
            else:
                pv, pb = prompt
            pv, pb = _as_stereo(pv, "prompt vocal"), _as_stereo(pb, "prompt bgm")
            if track == "vocal":
                pb = torch.zeros_like(pb)
            context, pcv, pcb = self.prompt_latents(pv, pb, prompt_noise, gen)
            n_prompt = pcv.shape[0]
            cv, cb = torch.cat([pcv, cv]), torch.cat([pcb, cb])
        vae = self.vae()
        wav = decode_codes(self.flow(), lambda lat: vae.decode(lat[None], chunk=vae_chunk)[0], cv, cb,
                           n_prompt=n_prompt, context=context, noise=noise, generator=gen,
                           sample_rate=self.sample_rate, progress=self._progress,
                           num_steps=num_steps, guidance=guidance_scale)
        return wav, self.sample_rate
