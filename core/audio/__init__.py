"""Audio files: reading, resampling, quality checks (io); vocal / accompaniment separation (separation)."""
