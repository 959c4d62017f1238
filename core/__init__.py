"""SongGen Studio engine: data, model, training, export. Knows nothing of Gradio."""

__version__ = "0.1.0"
