"""SongGen Studio engine: data, model, training, export. Knows nothing of Gradio."""
import os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a CPU shared with other
# work (the studio's own server, a second job, a laptop's browser) spinning threads fight for the
# cores and the many small ops of a decode step ran up to 35x slower (2 threads, load 6: 50 demo
# frames in 96 s spinning, 6.8 s passive). A user's own OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
