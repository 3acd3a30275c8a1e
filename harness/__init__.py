"""rlvr-harness: one budget, one evaluation protocol, head-to-head leaderboards for GRPO-family RL."""

__version__ = "0.1.0"
