"""The factorised single-codebook VQ (DAC style): weight-normed 1x1 projections, cosine-nearest lookup."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn
import torch.nn.functional as F

from core.weights import WeightFileError, fold_weight_norm, get


class FactorizedVQ(nn.Module):
    def __init__(self, sd: Mapping[str, torch.Tensor], prefix: str, path: str | Path, what: str):
        super().__init__()
        codebook = get(sd, f"{prefix}codebook.weight", path, what, ndim=2)
        w_in = fold_weight_norm(sd, f"{prefix}in_proj")
        w_out = fold_weight_norm(sd, f"{prefix}out_proj")
        if w_in is None:
            raise WeightFileError(f"{what} {path} is missing tensor '{prefix}in_proj.weight_g'")
        if w_out is None:
            raise WeightFileError(f"{what} {path} is missing tensor '{prefix}out_proj.weight_g'")
        dim = codebook.shape[1]
        if w_in.shape[0] != dim or w_out.shape[1] != dim:
            raise WeightFileError(f"{what} {path}: '{prefix}in_proj'/'{prefix}out_proj' do not match the "
                                  f"codebook dim {dim}")
        self.register_buffer("codebook", codebook.clone())
        self.register_buffer("w_in", w_in.clone())
        self.register_buffer("b_in", get(sd, f"{prefix}in_proj.bias", path, what).clone())
        self.register_buffer("w_out", w_out.clone())
        self.register_buffer("b_out", get(sd, f"{prefix}out_proj.bias", path, what).clone())

    def project_in(self, h: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> z_e [B, d, T]."""
        return F.conv1d(h.transpose(1, 2), self.w_in, self.b_in)

    def lookup(self, z_e: torch.Tensor) -> torch.Tensor:
        """z_e [B, d, T] -> codes [B, T]: argmax of -(|e|^2 - 2 e.c + |c|^2) over L2-normalised vectors."""
        b, d, t = z_e.shape
        e = F.normalize(z_e.transpose(1, 2).reshape(b * t, d))
        c = F.normalize(self.codebook)
        dist = e.pow(2).sum(1, keepdim=True) - 2 * e @ c.t() + c.pow(2).sum(1, keepdim=True).t()
        return (-dist).max(1)[1].view(b, t)

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        return self.lookup(self.project_in(h))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T] -> [B, T, D] (raw codebook rows through out_proj)."""
        q = F.embedding(codes, self.codebook).transpose(1, 2)
        return F.conv1d(q, self.w_out, self.b_out).transpose(1, 2)
