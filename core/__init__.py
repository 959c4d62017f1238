"""SongGen Studio engine: data, model, training, export. Knows nothing of Gradio."""
from core import threads

# Before torch loads OpenMP: how idle OpenMP threads wait (a short bounded spin, or sleeping at once in a
# shared Space; core/threads.py). A user's own OMP_WAIT_POLICY / GOMP_SPINCOUNT wins.
threads.apply()

__version__ = "0.1.0"
