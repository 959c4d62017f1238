"""SongGeneration's language model (LeLM): official checkpoints in, the same numbers out."""
from .checkpoint import parse_dtype
from .lelm import LeLM
from .loss import build_targets, masked_ce
from .official_config import CheckpointError, OfficialConfig, read_official_config
from .pattern import EMPTY, EOS, DelayPattern

__all__ = ["LeLM", "build_targets", "masked_ce", "CheckpointError", "OfficialConfig",
           "read_official_config", "DelayPattern", "EOS", "EMPTY", "parse_dtype",
           "resolve_base_model", "describe_checkpoint"]


def __getattr__(name: str):
    if name in ("resolve_base_model", "describe_checkpoint"):
        from . import info
        return getattr(info, name)
    raise AttributeError(name)
