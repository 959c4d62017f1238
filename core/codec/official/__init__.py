"""SongGeneration's official codec, re-implemented on current libraries from the official weight files."""
from .codec import OFFICIAL_HPARAMS, OfficialCodec, clear_cache
from .loading import WeightFileError

__all__ = ["OfficialCodec", "OFFICIAL_HPARAMS", "WeightFileError", "clear_cache"]
