"""Preference tuning: pairs from A/B listening (pairs, candidates), their batches (data) and DPO (dpo)."""
from core.preference.pairs import AddReport, PairError, PairStore, pairs_dir, split_prompts, validate_row

__all__ = ["AddReport", "PairError", "PairStore", "pairs_dir", "split_prompts", "validate_row"]
