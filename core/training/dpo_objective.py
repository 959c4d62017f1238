"""DPO inside core.train's loop: the data, the per-batch loss and the held-out reward metrics.

`training.objective: dpo` swaps three things of an SFT run and keeps everything else (accelerate,
LoRA / full, checkpoints, stop / save-now / resume, merge and push of the result):
- data: the workspace's preference pairs (core.preference.data) instead of the prepared songs; the
  pairs of `dpo.val_fraction` of the prompts are held out. Batches come from the same BatchPlan
  (seeded by (seed, epoch), so resume replays the same pairs) with length bucketing on the longer side;
- the step: `DPOStep` (core.training.dpo_loss) -> the DPO loss (+ sft_weight x SFT) and its statistics;
- evaluation: DPO loss, chosen / rejected rewards, reward margin and preference accuracy on the
  held-out pairs, written as the `eval` event (`val_reward_margin`, `val_reward_accuracy`, ...).
Condition dropout is off in a DPO run (see core.training.dpo_loss). Full finetuning: the reference
log-probs of every pair are computed with the starting weights before the first step and kept in
`<run>/reference_logps.safetensors` (keyed by pair id), which a resumed run reads back.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, Optional

import torch

from core.preference.data import PairSet, collate_pairs, load_pair_splits
from core.training.dpo_loss import STAT_KEYS, DPOStep, pair_logps, reward_means, reward_sums
from core.training.objective import Objective

REFERENCE_FILE = "reference_logps.safetensors"


class DPOObjective(Objective):
    """The DPO loss on preference pairs (core.training.objective describes the interface)."""

    stat_keys = STAT_KEYS

    def __init__(self, trainer):
        super().__init__(trainer)
        cfg = trainer.cfg
        self.dc = cfg.dpo
        trainer.lelm.condition_dropout.cfg_p = 0.0  # policy and reference judge under the same conditions
        trainer.lelm.condition_dropout.attribute_p = {}
        self.train_set, self.val_set, self.info = load_pair_splits(cfg, trainer.max_frames)
        if len(self.train_set) == 0:
            from core.config import ConfigError
            raise ConfigError(f"{self.info['pairs_dir']}: every pair is held out; add pairs of more prompts or "
                             "lower dpo.val_fraction")
        self.data_dir = Path(self.info["pairs_dir"])
        self.reference: Optional[dict[str, torch.Tensor]] = None  # full finetuning: pair id -> [chosen, rejected]
        trainer.log(self.describe())

    @property
    def uses_adapters(self) -> bool:
        return self.tr.tc.type == "lora"

    def describe(self) -> str:
        i = self.info
        ref = "adapters disabled" if self.uses_adapters else f"precomputed ({REFERENCE_FILE})"
        return (f"DPO on {i['train_pairs']} pairs ({i['val_pairs']} held out from {i['val_prompts']} prompts) in "
                f"{i['pairs_dir']}; beta {self.dc.beta}, sft_weight {self.dc.sft_weight}, label smoothing "
                f"{self.dc.label_smoothing}; reference = {ref}")

    def step_module(self) -> DPOStep:
        return DPOStep(self.tr.model, self.tr.lelm, self.dc.beta, self.dc.sft_weight, self.dc.label_smoothing)

    def loader(self, plan, num_workers: int = 0):
        from torch.utils.data import DataLoader

        lelm = self.tr.lelm
        return DataLoader(self.train_set, batch_sampler=plan, num_workers=num_workers,
                          collate_fn=partial(collate_pairs, prompt_frames=lelm.config.prompt_frames,
                                             version=lelm.version),
                          persistent_workers=False, prefetch_factor=2 if num_workers else None)

    # ---- the step ---------------------------------------------------------------------------------
    def forward(self, step_module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (loss to backpropagate, statistics [len(STAT_KEYS)])."""
        ids = batch.pop("pair_ids")
        if self.reference is not None:
            dev = batch["codes"].device
            batch["ref_logps"] = torch.cat([torch.stack([self.reference[i][0] for i in ids]),
                                            torch.stack([self.reference[i][1] for i in ids])]).to(dev)
        return step_module(**batch)

    # ---- reference of a full finetune ---------------------------------------------------------------
    def prepare(self, start_step: int) -> None:
        """Full finetuning: load the run's reference log-probs, or compute them now (step 0 only)."""
        if self.uses_adapters:
            return
        from safetensors import safe_open
        from safetensors.torch import save

        tr = self.tr
        path = tr.run_dir / REFERENCE_FILE
        sets = [s for s in (self.train_set, self.val_set) if s is not None]
        if path.is_file():
            with safe_open(str(path), framework="pt") as fh:
                ids = json.loads(fh.metadata()["pair_ids"])
                table = fh.get_tensor("logps")
            self.reference = {i: table[k] for k, i in enumerate(ids)}
            missing = [i for s in sets for i in s.pair_ids if i not in self.reference]
            if missing:
                raise RuntimeError(f"{path} lacks pairs added after the run started (e.g. {missing[0]}); "
                                   "start a new DPO run to use them")
            return
        if start_step > 0:
            raise RuntimeError(f"{path} is missing: the reference of this run cannot be rebuilt from trained weights; "
                               "start the DPO run again")
        ids, rows, bs = [], [], tr.tc.batch_size
        for s in sets:
            for start in range(0, len(s), bs):
                idx = list(range(start, min(start + bs, len(s))))
                p = self._logps(s, idx, reference=False).float().cpu()
                ids += [s.pair_ids[i] for i in idx]
                rows.append(torch.stack([p[:len(idx)], p[len(idx):]], dim=1))
        table = torch.cat(rows)
        self.reference = {i: table[k] for k, i in enumerate(ids)}
        if tr.is_main:
            from core.fsutil import atomic_write_bytes
            atomic_write_bytes(path, save({"logps": table.contiguous()}, metadata={"pair_ids": json.dumps(ids)}))
        tr.log(f"reference log-probs of {len(ids)} pairs computed with the starting weights -> {path}")

    @torch.no_grad()
    def _logps(self, pairs: PairSet, idx: list[int], reference: bool) -> torch.Tensor:
        tr = self.tr
        from core.training.evaluate import to_device

        module = tr.accelerator.unwrap_model(tr.step_module)
        batch = to_device(collate_pairs([pairs.item(i) for i in idx], tr.lelm.config.prompt_frames,
                                        tr.lelm.version), tr.accelerator.device)
        batch.pop("pair_ids")
        was = module.training
        module.eval()
        try:
            with tr.accelerator.autocast():
                return pair_logps(module, batch, reference=reference)
        finally:
            module.train(was)

    # ---- held-out metrics ---------------------------------------------------------------------------
    def evaluate(self, step: int) -> Optional[float]:
        if self.val_set is None or len(self.val_set) == 0:
            return None
        tr, acc = self.tr, self.tr.accelerator
        bs = tr.tc.batch_size
        batches = [list(range(i, min(i + bs, len(self.val_set)))) for i in range(0, len(self.val_set), bs)]
        sums = torch.zeros(6, dtype=torch.float64)
        mine = batches[tr.rank::tr.world]
        if tr.sharded:  # each forward is a collective: every rank runs as many (the extra ones are not counted)
            mine += [None] * (-(-len(batches) // tr.world) - len(mine))
        for idx in mine:
            run = idx if idx is not None else batches[0]
            policy = self._logps(self.val_set, run, reference=False)
            if self.reference is not None:
                ids = [self.val_set.pair_ids[i] for i in run]
                ref = torch.cat([torch.stack([self.reference[i][0] for i in ids]),
                                 torch.stack([self.reference[i][1] for i in ids])])
            else:
                ref = self._logps(self.val_set, run, reference=True)
            if idx is not None:
                sums += reward_sums(policy.cpu(), ref.cpu(), self.dc.beta, self.dc.label_smoothing)
        if tr.world > 1:
            sums = acc.reduce(sums.to(acc.device), reduction="sum").cpu()
        m = reward_means(sums)
        if tr.is_main:
            val = {f"val_{k}": v for k, v in m.items() if k != "pairs"}
            tr.tel.event("eval", step=step, pairs=m["pairs"], **val)
            tr.tel.scalars(step, "val", {k: v for k, v in m.items() if k != "pairs"})
            tr.log(f"step {step}: held-out pairs {m['pairs']}: reward margin {m['reward_margin']:.4f}, "
                   f"accuracy {m['reward_accuracy']:.3f}, DPO loss {m['dpo_loss']:.4f}")
        return m["dpo_loss"]
