"""A run is a directory: card.json, samples.jsonl (append-only), metrics.json, and whatever a trainer adds.

Appends are line-at-a-time and fsynced; whole files are replaced atomically. A killed process leaves at most
one torn last line, which the next reader drops, so a resumed run neither loses nor duplicates a sample. One
process writes a run at a time: `RunDir.open` takes an exclusive lock on the directory (`.lock`, an flock the
kernel releases when the process ends, however it ends) and holds it for the process's life.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from harness.card import canonical_json, card_differences, card_hash

try:
    import fcntl
except ImportError:  # not POSIX: no lock (documented); everything else works
    fcntl = None

_HELD_LOCKS: dict[Path, int] = {}  # run directories this process writes -> the open lock file


class RunMismatchError(RuntimeError):
    """The directory holds a run made under a different protocol card."""


class RunLockedError(RunMismatchError):
    """Another process is writing the directory."""


def _lock(path: Path) -> None:
    """Hold `path`'s lock until this process ends; fail at once, naming the holder, if another process has it."""
    key = path.resolve()
    if fcntl is None or key in _HELD_LOCKS:
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 300).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise RunLockedError(f"{path} is being written by {holder}; wait for it to finish, or pass another "
                             "--out") from None
    except OSError as e:  # a file system without locks (some NFS, SMB): say so and carry on unlocked
        os.close(fd)
        print(f"harness: warning: {path} cannot be locked ({e.strerror}); do not start a second writer on it",
              file=sys.stderr)
        _HELD_LOCKS[key] = -1
        return
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} ({' '.join(sys.argv)[:200]})".encode())
    _HELD_LOCKS[key] = fd


def _current_umask() -> int:
    umask = os.umask(0)  # the only way to read it; done once, at import, before any thread could write files
    os.umask(umask)
    return umask


# What a plain open() gives a new file: 0666 less the umask (mkstemp's 0600 would hide a run from colleagues
# on a shared machine).
_READABLE_MODE = 0o666 & ~_current_umask()


def write_text_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.fchmod(fd, _READABLE_MODE)
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
        """Start a run under `card`, or resume the one already there if its card hashes the same; either way
        this process holds the directory's lock from here on."""
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise RunMismatchError(f"{run.path} is a file, not a run directory; pass another --out")
        _lock(run.path)
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

    def read_unique_samples(self) -> tuple[list[dict], int]:
        """The samples with each (task, problem_id, sample_index) once, the first stored kept, and how many
        repeats were dropped (a run written twice by two processes before runs were locked)."""
        unique: dict[tuple, dict] = {}
        samples = self.read_samples()
        for sample in samples:
            unique.setdefault((sample.get("task"), sample.get("problem_id"), sample.get("sample_index")), sample)
        return list(unique.values()), len(samples) - len(unique)

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
