"""Run folders: the run.json store, the accelerate launch command, one-process-per-run locks, OS processes."""
