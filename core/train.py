"""Entry point kept at its old name: `accelerate launch -m core.train --config <run>/config.yaml` (what the
studio runs and what run folders made before the package move record). The trainer is core.training.trainer."""
from core.training.trainer import main, train  # noqa: F401

if __name__ == "__main__":
    main()
