"""The RL trainer, the SFT warm start, losses, batching and checkpoints."""
