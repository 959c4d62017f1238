"""DPO on preference pairs: the batch, the loss and the held-out reward metrics.

Sequence log-probability of a song: the sum over the three streams and every valid position
(the delay pattern's mask ∧ frame < the song's length, plus the EOS frame when the song ends inside
the window) of log p(token), from `LeLM.compute_predictions` on the same inputs SFT training feeds
(`build_targets`: EOS after a whole song, nothing after a cropped one), with the prompt tokens the
pair's songs were generated with. EOS counts because where a song stops is part of what the listener
judged (a song cut off, or one that runs on); a cropped song's window holds no ending, so none counts.

DPO (Rafailov et al. 2023), with conservative label smoothing eps (Mitchell 2023):
    h      = beta * [(log pi(c) - log ref(c)) - (log pi(r) - log ref(r))]
    loss   = -(1 - eps) * log sigmoid(h) - eps * log sigmoid(-h)
    reward = beta * (log pi - log ref) for chosen / rejected; margin = their difference;
    accuracy = share of pairs with margin > 0.
plus `sft_weight` x the SFT loss of the chosen songs (masked_ce, the mean of the three streams).

Reference model = the model before this stage:
- LoRA: the same weights with the adapters switched off (peft `disable_adapter()`), computed in the
  same step without gradients, so no second copy lives in memory;
- full finetuning: reference log-probs computed once with the starting weights before the first
  step and stored in the run folder (`reference_logps.safetensors`, keyed by pair id), so no frozen
  copy either; resume reads them back.
Condition dropout is off in DPO: the policy and the reference must judge the songs under the same
lyrics and description the listener heard.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.tokens import EMPTY

# What the step returns besides the loss, in this order (means over the pairs of the batch).
STAT_KEYS = ("loss", "dpo_loss", "sft_loss", "chosen_reward", "rejected_reward", "reward_margin",
             "reward_accuracy", "chosen_logp", "rejected_logp")


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float, label_smoothing: float = 0.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO loss, chosen reward and rejected reward (all [B]) from sequence log-probs [B]."""
    chosen_reward = beta * (pi_chosen - ref_chosen)
    rejected_reward = beta * (pi_rejected - ref_rejected)
    h = chosen_reward - rejected_reward
    loss = -(1.0 - label_smoothing) * F.logsigmoid(h) - label_smoothing * F.logsigmoid(-h)
    return loss, chosen_reward.detach(), rejected_reward.detach()


def inputs_and_valid(codes: torch.Tensor, lengths: torch.Tensor, reaches_end: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(model input/targets as SFT builds them, positions that count [B, K, T']: frame < length, and
    frame == length (EOS) where the song ends in the window)."""
    from core.model import build_targets

    targets = build_targets(codes, lengths)
    for b in (~reaches_end.to(targets.device)).nonzero().flatten().tolist():
        targets[b, :, int(lengths[b])] = EMPTY  # a cropped song does not end here
    frames = torch.arange(targets.shape[-1], device=targets.device)
    ends = lengths.to(targets.device) + reaches_end.to(targets.device).long()  # EOS frame included
    valid = frames[None, None, :] < ends[:, None, None]
    return targets, valid.expand_as(targets)


def sequence_logps(lelm: nn.Module, targets: torch.Tensor, valid: torch.Tensor, lyrics: Sequence,
                   descriptions: Sequence, prompt: Optional[torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (sum of log p over valid ∧ pattern positions [B], logits [B, K, T, V], pattern mask [B, K, T])."""
    logits, mask = lelm.compute_predictions(targets, lyrics=lyrics, descriptions=descriptions, prompt=prompt)
    use = mask & valid.to(mask.device)
    tgt = torch.where(use, targets.to(mask.device), torch.zeros_like(targets, device=mask.device))
    V = logits.shape[-1]
    logp = -F.cross_entropy(logits.float().reshape(-1, V), tgt.reshape(-1), reduction="none").view(tgt.shape)
    return (logp * use).sum(dim=(1, 2)), logits, mask


class DPOStep(nn.Module):
    """Wraps the trained model (LeLM or its peft model) so DDP/FSDP see one forward -> (loss, stats).

    A batch holds B pairs as 2B songs: chosen first, then rejected (`core.preference.data.collate_pairs`).
    `ref_logps` [2B] (precomputed reference) is used when given; otherwise the model must be a peft
    model and the reference is the same forward with its adapters disabled.
    """

    def __init__(self, lm: nn.Module, lelm: nn.Module, beta: float, sft_weight: float = 0.0,
                 label_smoothing: float = 0.0):
        super().__init__()
        self.lm = lm
        object.__setattr__(self, "_lelm", lelm)  # the LeLM inside (not a second registration)
        self.beta, self.sft_weight, self.label_smoothing = float(beta), float(sft_weight), float(label_smoothing)

    def reference_logps(self, targets, valid, lyrics, descriptions, prompt) -> torch.Tensor:
        if not hasattr(self.lm, "disable_adapter"):
            raise RuntimeError("full finetuning needs precomputed reference log-probs (ref_logps)")
        with torch.no_grad(), self.lm.disable_adapter():
            return sequence_logps(self._lelm, targets, valid, lyrics, descriptions, prompt)[0]

    def forward(self, codes: torch.Tensor, lengths: torch.Tensor, reaches_end: torch.Tensor, prompt: torch.Tensor,
                lyrics: list, descriptions: list, ref_logps: Optional[torch.Tensor] = None,
                score: Optional[str] = None):
        """-> (loss, stats); with score="policy" | "reference" only the sequence log-probs [2B] (`pair_logps`)."""
        from core.model import masked_ce

        targets, valid = inputs_and_valid(codes, lengths, reaches_end)
        if score is not None:
            if score == "reference" and hasattr(self.lm, "disable_adapter"):
                return self.reference_logps(targets, valid, lyrics, descriptions, prompt)
            return sequence_logps(self._lelm, targets, valid, lyrics, descriptions, prompt)[0]
        if ref_logps is None:
            ref_logps = self.reference_logps(targets, valid, lyrics, descriptions, prompt)
        logps, logits, mask = sequence_logps(self._lelm, targets, valid, lyrics, descriptions, prompt)
        B = codes.shape[0] // 2
        ref_logps = ref_logps.to(logps.device, logps.dtype)
        losses, rc, rr = dpo_loss(logps[:B], logps[B:], ref_logps[:B], ref_logps[B:], self.beta,
                                  self.label_smoothing)
        dpo = losses.mean()
        sft = logps.new_zeros(())
        if self.sft_weight > 0:  # the SFT loss of the chosen songs, exactly as core.train computes it
            sft = masked_ce(logits[:B], targets[:B].to(logits.device), mask[:B]).mean()
        loss = dpo + self.sft_weight * sft
        margin = rc - rr
        stats = torch.stack([loss.detach(), dpo.detach(), sft.detach(), rc.mean(), rr.mean(), margin.mean(),
                             (margin > 0).float().mean(), logps[:B].detach().mean(), logps[B:].detach().mean()])
        return loss, stats


@torch.no_grad()
def pair_logps(step: nn.Module, batch: dict[str, Any], reference: bool) -> torch.Tensor:
    """Sequence log-probs [2B] of a collated pair batch under the policy (or, reference=True, the
    reference: adapters disabled). Used to precompute the reference of a full finetune and to evaluate.

    `step` is a DPOStep or the wrapper that prepared it: the call goes through its forward, so a sharded
    (FSDP2) root gathers its own weights first -- calling the LeLM inside would meet sharded DTensors."""
    keys = ("codes", "lengths", "reaches_end", "prompt", "lyrics", "descriptions")
    return step(**{k: batch[k] for k in keys}, score="reference" if reference else "policy")


def reward_sums(policy: torch.Tensor, reference: torch.Tensor, beta: float, label_smoothing: float = 0.0
                ) -> torch.Tensor:
    """From log-probs [2N] (chosen first): float64 [6] = (pairs, and the sums over pairs of the DPO loss,
    chosen reward, rejected reward, margin, margin > 0), to add up over batches and processes."""
    n = policy.shape[0] // 2
    losses, rc, rr = dpo_loss(policy[:n].double(), policy[n:].double(), reference[:n].double(),
                              reference[n:].double(), beta, label_smoothing)
    margin = rc - rr
    return torch.stack([losses.new_tensor(float(n)), losses.sum(), rc.sum(), rr.sum(), margin.sum(),
                        (margin > 0).double().sum()]).detach().cpu()


def reward_means(sums: torch.Tensor) -> dict[str, float]:
    """Held-out metrics from `reward_sums` totals: mean loss, rewards, margin, accuracy; and the pair count."""
    n, loss, rc, rr, margin, correct = (float(x) for x in sums)
    d = max(n, 1.0)
    return {"dpo_loss": loss / d, "chosen_reward": rc / d, "rejected_reward": rr / d, "reward_margin": margin / d,
            "reward_accuracy": correct / d, "pairs": int(n)}
