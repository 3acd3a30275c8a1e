"""What every engine writes for a run, in one format: `train_log.jsonl` (one record per rollout step, appended and
synced), `ledger.json` (limits, consumption, why it stopped), and on resume the log cut back to the checkpoint's
steps, so a killed run neither loses nor repeats a step's record."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from harness.budget import Budget, Ledger
from harness.runstore import write_json_atomic, write_text_atomic

TRAIN_LOG = "train_log.jsonl"
LEDGER = "ledger.json"


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss or reward, a budget too small for one step); says why and what is kept."""


def write_ledger(run_dir: Path, budget: Budget, ledger: Ledger, stopped_by: str | None, steps: int) -> None:
    """The run's `ledger.json`: its limits, what it consumed and why it stopped (every engine writes the same)."""
    write_json_atomic(run_dir / LEDGER, {"limits": budget.to_dict(), "consumed": ledger.to_dict(),
                                         "stopped_by": stopped_by, "steps_trained": steps})


def append_train_log(run_dir: Path, record: dict) -> None:
    """One step's record appended to `train_log.jsonl` and synced (NaN written as null)."""
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
    with open(run_dir / TRAIN_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(clean) + "\n")
        f.flush()
        os.fsync(f.fileno())


def trim_train_log(run_dir: Path, steps: int) -> None:
    """Resuming from a checkpoint after `steps` steps: drop the records of later steps (they are trained again, so
    none is logged twice) and a last line cut short by a kill."""
    log = run_dir / TRAIN_LOG
    if log.is_file():
        kept = [line for line in log.read_text().splitlines(keepends=True)
                if line.endswith("\n") and json.loads(line)["step"] <= steps]
        write_text_atomic(log, "".join(kept))
