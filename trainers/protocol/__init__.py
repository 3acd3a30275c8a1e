"""What every training engine shares, so that a row trained by any engine is trained under one protocol:

- `config`: the shared config fields (optimiser, batch, update schedule, rollout engine) every variant inherits;
- `seeds`: the seeded question order, minibatches and every other draw, keyed by (run seed, purpose, step);
- `schedule`: the update schedule and the budget rules (what a step costs, how many steps a budget pays for);
- `runlog`: the train log, the ledger and resume's trimming of the log.

(Command-line settings, `--set` and `--protocol paper`, are read by `harness.overrides`.)

This package imports nothing itself; its modules import the standard library, torch and harness's budget and
run store only, so the variant math (trainers.algos) and every engine stand on it without loading any engine.
"""
