"""The protocol card: every setting that changes a number, hashed. The hash names the run."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version

# Fields that describe a run but do not change its numbers (where, when, by which command); not hashed.
UNHASHED = ("hash", "created_at", "command", "provenance")


def library_versions() -> dict[str, str]:
    found = {}
    for package in ("rlvr-harness", "torch", "transformers", "math-verify", "sympy", "numpy", "vllm"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def card_hash(card: dict) -> str:
    hashed = {key: value for key, value in card.items() if key not in UNHASHED}
    return hashlib.sha256(canonical_json(hashed).encode()).hexdigest()


def card_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the hashed settings that differ, to say why a run directory cannot be resumed."""
    differences = []
    for key in sorted(set(old) | set(new)):
        if not prefix and key in UNHASHED:
            continue
        a, b = old.get(key), new.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            differences += card_differences(a, b, prefix=f"{path}.")
        elif a != b:
            differences.append(f"{path}: {a!r} -> {b!r}")
    return differences
