"""Training layer: LightningModule, freezing/LoRA, schedules, callbacks, checkpoint files."""
