"""A run is a directory: card.json, samples.jsonl (append-only), metrics.json, and whatever a trainer adds.

Appends are line-at-a-time and fsynced; whole files are replaced atomically. A killed process leaves at most
one torn last line, which the next reader drops, so a resumed run neither loses nor duplicates a sample.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from harness.card import canonical_json, card_differences, card_hash


class RunMismatchError(RuntimeError):
    """The directory holds a run made under a different protocol card."""


def write_text_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def card_path(self) -> Path:
        return self.path / "card.json"

    @property
    def samples_path(self) -> Path:
        return self.path / "samples.jsonl"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @classmethod
    def open(cls, path: str | Path, card: dict) -> RunDir:
        """Start a run under `card`, or resume the one already there if its card hashes the same."""
        run = cls(path)
        if run.card_path.is_file():
            stored = read_json(run.card_path)
            if card_hash(stored) != card_hash(card):
                changes = "; ".join(card_differences(stored, card)[:6])
                raise RunMismatchError(
                    f"{run.path} holds a run made under a different protocol card ({changes}); "
                    "pass another --out, or delete that directory to start over")
        else:
            write_json_atomic(run.card_path, {**card, "hash": card_hash(card)})
        return run

    def card(self) -> dict:
        return read_json(self.card_path)

    def read_samples(self, repair: bool = True) -> list[dict]:
        """Every complete sample line. A torn last line (a killed writer) is dropped, and with `repair` cut
        from the file so the next append starts clean; a reader that does not own the run passes False."""
        if not self.samples_path.is_file():
            return []
        samples, good_bytes = [], 0
        with open(self.samples_path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # a torn write from a killed process: drop it, it will be regenerated
                try:
                    samples.append(json.loads(line))
                except json.JSONDecodeError:
                    raise ValueError(f"{self.samples_path}:{len(samples) + 1}: malformed sample line; "
                                     "the run store is damaged, delete that line or the run") from None
                good_bytes += len(line)
        if repair and good_bytes != self.samples_path.stat().st_size:
            with open(self.samples_path, "r+b") as f:
                f.truncate(good_bytes)
        return samples

    def append_samples(self, samples: Iterable[dict]) -> None:
        payload = "".join(canonical_json(s) + "\n" for s in samples)
        if not payload:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.samples_path, "a", encoding="utf-8") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())

    def write_metrics(self, metrics: dict) -> None:
        write_json_atomic(self.metrics_path, metrics)

    def metrics(self) -> dict:
        return read_json(self.metrics_path)
