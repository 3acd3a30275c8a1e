import os
from pathlib import Path

from harness.machine import pin_cpu_kernels

pin_cpu_kernels()  # before any test imports torch, so the suite runs the kernels `harness` commands run

import pytest  # noqa: E402

# Nothing in the suite may reach a hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """The offline benchmark copies in ../shared/benchmarks; tests that need them skip where they are absent."""
    if not (SHARED_BENCHMARKS / "MANIFEST.md").is_file():
        pytest.skip(f"benchmark data not found at {SHARED_BENCHMARKS} (the project expects ../shared/benchmarks)")
    return SHARED_BENCHMARKS


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session shares one cache dir, apart from the user's, so the warm start is built once."""
    cache = os.environ.get("HARNESS_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "harness-cache")
    monkeypatch.setenv("HARNESS_CACHE", cache)


@pytest.fixture(scope="session")
def untrained_model_dir(tmp_path_factory) -> Path:
    """A sandbox-architecture model with random weights: generation is real, fast and deterministic."""
    from harness.sandbox.warmstart import build_untrained_sandbox

    return build_untrained_sandbox(tmp_path_factory.mktemp("untrained") / "model")


@pytest.fixture(scope="module")
def train_problems():
    """The first 200 sandbox training problems, loaded once per test module (the trainer tests share it)."""
    from harness.task import TASKS

    return TASKS.get("sandbox-train").load(None).problems[:200]
