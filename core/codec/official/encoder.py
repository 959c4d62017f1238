"""MusicFM feature encoder: conv subsampling + the stock `transformers` Wav2Vec2-Conformer, truncated at the
deepest hidden state any stream needs. All sizes come from tensor shapes; only the head count and a few
config values (which shapes cannot reveal) come from `hparams`."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn
from transformers import Wav2Vec2ConformerConfig
from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import Wav2Vec2ConformerEncoder

from core.codec.official.frontend import MelFrontEnd, to_mono_24k
from core.weights import WeightFileError, get, load_strict, take_prefix

PREFIX = "bestrq.model."


class Res2d(nn.Module):
    """Two 3x3 convs with BatchNorm plus a strided 3x3 conv shortcut (MusicFM's `Res2dModule`)."""

    def __init__(self, cin: int, cout: int, stride=(2, 2)):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv3 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn3 = nn.BatchNorm2d(cout)

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + self.bn3(self.conv3(x)))


class ConvSubsampling(nn.Module):
    """[B, 128 mel, 4T] -> [B, T, D]: two stride-(2,2) Res2d blocks, channel-major flatten, linear."""

    def __init__(self, channels: int, n_bands: int, out_dim: int):
        super().__init__()
        self.conv = nn.Sequential(Res2d(1, channels), Res2d(channels, channels))
        self.linear = nn.Linear(channels * (n_bands // 4), out_dim)

    def forward(self, mel):
        x = self.conv(mel[:, None])                       # [B, C, F/4, T/4]
        b, c, f, t = x.shape
        return self.linear(x.permute(0, 3, 1, 2).reshape(b, t, c * f))


def conformer_config(sd: Mapping[str, torch.Tensor], hp: Mapping, n_layers: int) -> Wav2Vec2ConformerConfig:
    width = sd["conformer.layer_norm.weight"].shape[0]
    ffn = sd["conformer.layers.0.ffn1.intermediate_dense.weight"].shape[0]
    kernel = sd["conformer.layers.0.conv_module.depthwise_conv.weight"].shape[-1]
    cfg = Wav2Vec2ConformerConfig(
        hidden_size=width, num_hidden_layers=n_layers, num_attention_heads=int(hp["num_attention_heads"]),
        intermediate_size=ffn, hidden_act=hp.get("hidden_act", "swish"), conv_depthwise_kernel_size=kernel,
        position_embeddings_type=hp.get("position_embeddings_type", "rotary"),
        rotary_embedding_base=hp.get("rotary_embedding_base", 10000), layer_norm_eps=hp.get("layer_norm_eps", 1e-5),
        num_conv_pos_embeddings=hp.get("num_conv_pos_embeddings", 128),
        num_conv_pos_embedding_groups=hp.get("num_conv_pos_embedding_groups", 16),
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0)
    # eager attention is what the reference ran (transformers 4.37); sdpa may differ in the last bits
    cfg._attn_implementation = "eager"
    return cfg


class MusicFMEncoder(nn.Module):
    """48 kHz stereo windows -> conformer hidden states at the requested indices (0 = conv output)."""

    def __init__(self, sd_all: Mapping[str, torch.Tensor], hp: Mapping, max_layer: int, path: str | Path,
                 what: str):
        super().__init__()
        ch = get(sd_all, PREFIX + "conv.conv.0.conv1.weight", path, what, ndim=4).shape[0]
        lin = get(sd_all, PREFIX + "conv.linear.weight", path, what, ndim=2)
        get(sd_all, PREFIX + "conformer.layer_norm.weight", path, what)
        get(sd_all, PREFIX + "conformer.layers.0.ffn1.intermediate_dense.weight", path, what)
        sd = take_prefix(sd_all, PREFIX)
        n_bands = 4 * lin.shape[1] // ch
        n_file_layers = len({k.split(".")[2] for k in sd if k.startswith("conformer.layers.")})
        if max_layer > n_file_layers:
            raise WeightFileError(f"{what} {path} has {n_file_layers} conformer layers but hidden state "
                                  f"{max_layer} is needed")
        self.mel = MelFrontEnd(sd.get("preprocessor_melspec_2048.mel_stft.mel_scale.fb"),
                               sd.get("preprocessor_melspec_2048.mel_stft.spectrogram.window"))
        self.conv = ConvSubsampling(ch, n_bands, lin.shape[0])
        load_strict(self.conv, take_prefix(sd, "conv."), path, what, prefix=PREFIX + "conv.")
        self.max_layer = max_layer
        self.conformer = Wav2Vec2ConformerEncoder(conformer_config(sd, hp, max_layer))
        # keep only what the truncated encoder uses: layers < max_layer, rotary inv_freq (pos_conv_embed and the
        # final LayerNorm never act on a hidden state we read)
        conf = take_prefix(sd, "conformer.")
        keep = {k: v for k, v in conf.items()
                if not k.startswith(("pos_conv_embed.", "layer_norm."))
                and not (k.startswith("layers.") and int(k.split(".")[1]) >= max_layer)}
        own = {k for k in self.conformer.state_dict() if not k.startswith(("pos_conv_embed.", "layer_norm."))}
        target = self.conformer.state_dict()
        for k in sorted(own, key=_layer_order):
            if k not in keep:
                raise WeightFileError(f"{what} {path} is missing tensor '{PREFIX}conformer.{k}'")
            if tuple(keep[k].shape) != tuple(target[k].shape):
                raise WeightFileError(f"{what} {path}: tensor '{PREFIX}conformer.{k}' has shape "
                                      f"{list(keep[k].shape)}, expected {list(target[k].shape)}")
        self.conformer.load_state_dict({k: keep[k] for k in own}, strict=False)
        # the unused modules stay randomly initialised: drop them so nobody mistakes them for loaded weights
        del self.conformer.pos_conv_embed
        self.conformer.layer_norm = nn.Identity()
        self.eval()

    @torch.no_grad()
    def hidden_states(self, wav48: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
        """[B, 2, N] at 48 kHz -> {layer: [B, T, D]} (T = N / 1920)."""
        # the STFT front end always runs in fp32 (half-precision FFTs are not supported everywhere)
        mel = self.mel(to_mono_24k(wav48.float()))
        h = self.conv(mel.to(self.conv.linear.weight.dtype))
        out = {0: h} if 0 in layers else {}
        pe = self.conformer.embed_positions(h) if self.conformer.embed_positions is not None else None
        for i in range(max(layers)):
            h = self.conformer.layers[i](h, relative_position_embeddings=pe)
            if isinstance(h, tuple):  # transformers 4.x returns (hidden, attn)
                h = h[0]
            if i + 1 in layers:
                out[i + 1] = h
        return out


def _layer_order(k: str):
    parts = k.split(".")
    return (int(parts[1]) if parts[0] == "layers" else -1, k)
