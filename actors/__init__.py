"""Inference: generation engines, the evaluation runner, and (with the RL loop) the rollout worker actors."""
