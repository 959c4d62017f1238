"""Text as SongGeneration reads it: lyric grammar (lyrics), section names, descriptions, raw song fields and
the rules upstream applies before the model sees text (rules). Imports nothing above core.config."""
