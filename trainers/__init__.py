"""Training, in four layers that the folders show:

- `trainers.algos`: the variant math. Every variant's reward shaping, group filter, advantage and loss as pure,
  registered tensor functions; the one source every engine calls. Imports torch only.
- `trainers.protocol`: what every engine shares: the shared config fields, the update schedule and budget rules,
  the seeded draws, the train log and ledger.
- `trainers.builtin`: the built-in trainer, the reference engine on small models (the GRPO skeleton, its
  rollouts, vLLM's included, and one module per variant; importing it registers the variants).
- `trainers.engines`: adapters to other engines (TRL, verl) that call the same variant math and protocol.

This package imports nothing itself, so the variant math can be loaded in an engine's environment (verl's workers)
without the built-in trainer.
"""
