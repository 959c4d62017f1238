"""SongGeneration's language model (LeLM): official checkpoints in, the same numbers out."""
from core.model.checkpoint import parse_dtype
from core.model.lelm import LeLM
from core.model.loss import build_targets, masked_ce
from core.model.official_config import CheckpointError, OfficialConfig, read_official_config
from core.model.pattern import EMPTY, EOS, DelayPattern

__all__ = ["LeLM", "build_targets", "masked_ce", "CheckpointError", "OfficialConfig",
           "read_official_config", "DelayPattern", "EOS", "EMPTY", "parse_dtype",
           "describe_checkpoint"]


def __getattr__(name: str):
    if name == "describe_checkpoint":
        from core.model import info
        return getattr(info, name)
    raise AttributeError(name)
