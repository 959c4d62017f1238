"""SongGeneration's official codec, re-implemented on current libraries from the official weight files."""
from core.codec.official.codec import OFFICIAL_HPARAMS, OfficialCodec, clear_cache
from core.weights import WeightFileError

__all__ = ["OfficialCodec", "OFFICIAL_HPARAMS", "WeightFileError", "clear_cache"]
