"""The finetuning loop under `accelerate launch -m core.train`: trainer, setup, objectives (SFT, DPO), dataset,
optimizers, schedule, checkpoints (+ safe_state), telemetry, samples, estimates and presets."""
