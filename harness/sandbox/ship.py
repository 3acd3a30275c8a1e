"""Build the default warm start and ship it: `python -m harness.sandbox.ship`.

Run after a change to the warm-start recipe, its config defaults or the sandbox generators (the shipped
record's config sha256 no longer matches, and tests/test_sandbox.py says so). It builds from scratch, never
from a cache, writes the files every machine then loads instead of building (`SHIPPED_FILES`), and prints
the figures to copy into the README. Commit the folder; the weights stay a few MB.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from harness.sandbox.warmstart import RECORD_NAME, SHIPPED_DIR, SHIPPED_FILES, WarmStartConfig, train_and_save


def ship(config: WarmStartConfig | None = None, progress: bool = True) -> dict:
    """Build `config` (default: the default warm start) from scratch into `SHIPPED_DIR`; returns its record."""
    with tempfile.TemporaryDirectory() as scratch:
        record = train_and_save(config or WarmStartConfig(), Path(scratch), progress=progress)
        SHIPPED_DIR.mkdir(exist_ok=True)
        for name in SHIPPED_FILES:
            shutil.copyfile(Path(scratch) / name, SHIPPED_DIR / name)
    return record


if __name__ == "__main__":
    figures = ship()
    print(json.dumps({k: v for k, v in figures.items() if k not in ("config", "held_out_history")}, indent=2))
    print(f"shipped to {SHIPPED_DIR}; {RECORD_NAME} holds the sha256 of the weights")
