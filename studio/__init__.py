"""SongGen Studio's Gradio face. No ML here: widgets, polling, and calls into `core`."""
