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
from typing import TYPE_CHECKING

from harness.machine import pin_cpu_kernels

if TYPE_CHECKING:
    from harness.sandbox.warmstart import WarmStartConfig


def ship(config: WarmStartConfig | None = None, progress: bool = True) -> dict:
    """Build `config` (default: the default warm start) from scratch into `SHIPPED_DIR`; returns its record."""
    from harness.sandbox.warmstart import SHIPPED_DIR, SHIPPED_FILES, WarmStartConfig, train_and_save

    with tempfile.TemporaryDirectory() as scratch:
        record = train_and_save(config or WarmStartConfig(), Path(scratch), progress=progress)
        SHIPPED_DIR.mkdir(exist_ok=True)
        for name in SHIPPED_FILES:
            shutil.copyfile(Path(scratch) / name, SHIPPED_DIR / name)
    return record


def main() -> None:
    pin_cpu_kernels()  # before the warm start's modules load torch (harness/machine.py)
    from harness.sandbox.warmstart import RECORD_NAME, SHIPPED_DIR

    figures = ship()
    print(json.dumps({k: v for k, v in figures.items() if k not in ("config", "held_out_history")}, indent=2))
    print(f"shipped to {SHIPPED_DIR}; {RECORD_NAME} holds the sha256 of the weights")


if __name__ == "__main__":
    main()
