"""What leaves a run: merge into the official layout, test generation, A/B and sweeps, candidates, Hub push."""
