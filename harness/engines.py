"""The training-engine seam: what `harness compare` asks of whoever trains a row.

An engine is one object registered in `ENGINES` (the built-ins by `trainers.builtin.engine`,
`trainers.engines.trl` and `trainers.engines.verl.engine`; a third party through the entry-point group
`harness.engines`). Compare hands it a `TrainRow` and gets back either the trained model (`Trained`) or the launch
files of a run it prepares for elsewhere (`Pending`: verl, on GPU machines; running compare again reads the
result back). Compare knows no engine by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.registry import Registry

# The engine a compare uses unless told otherwise; cards leave the engine out for it, so run directories made
# before engines existed keep their hashes.
DEFAULT_ENGINE = "builtin"


@dataclass(frozen=True)
class TrainRow:
    """What one compare row asks an engine to train: `variant` under `config` from `model`, at `seed`, into
    `train_dir` (its card is written; a checkpoint there is resumed)."""

    variant: str
    config: Any  # the variant's config dataclass, overrides applied
    model: Any  # harness.models' resolved model: name, path, weights sha256
    train_task: Any  # harness.task.Task
    train_data: Any  # its loaded data (problems, sha256)
    template: Any  # the prompt template (harness.prompts)
    budget: Any  # harness.budget.Budget
    seed: int
    train_dir: Path
    device: str = "cpu"
    progress: bool = False

    @property
    def final(self) -> Path:
        """Where the trained model is saved."""
        return self.train_dir / "final"


@dataclass(frozen=True)
class Trained:
    final: Path  # the trained model's directory


@dataclass(frozen=True)
class Pending:
    """A row prepared for an engine that trains elsewhere: its launch files, and what the user does next."""

    launches: tuple[Path, ...]
    instructions: str


class Engine(Protocol):
    name: str
    # Distributions whose versions a row trained by this engine records on its card (the built-in trainer's are
    # the harness's own).
    packages: tuple[str, ...]

    def check(self, variant: str, config) -> None:
        """Refuse, before any work, a variant this engine cannot run faithfully (ValueError saying why)."""

    def train(self, row: TrainRow) -> Trained | Pending:
        """Train the row (resuming its checkpoint), or prepare it to be trained elsewhere."""


ENGINES: Registry[Engine] = Registry(
    "engine", "harness.engines",
    builtins_module=("trainers.builtin.engine", "trainers.engines.trl", "trainers.engines.verl.engine"))


def train_in_process(row: TrainRow, fit: Callable[..., object]) -> Trained:
    """For an engine that trains here: load the policy and tokenizer, open a grading pool, call
    `fit(model=..., tokenizer=..., problems=..., ...)` (the keyword arguments the built-in trainer takes), then save
    the trained model to `row.final` atomically."""
    import torch
    from transformers import AutoModelForCausalLM

    from harness.cache import atomic_directory
    from harness.grading_pool import GradingPool

    tokenizer = load_tokenizer(row.model.path)
    policy = AutoModelForCausalLM.from_pretrained(row.model.path, dtype=torch.float32).to(row.device)
    task = row.train_task
    with GradingPool() as pool:
        fit(model=policy, tokenizer=tokenizer, problems=row.train_data.problems, template=row.template,
            answer_format=task.answer_format, grader=task.grader, max_new_tokens=task.max_new_tokens,
            budget=row.budget, seed=row.seed, run_dir=row.train_dir, pool=pool, progress=row.progress,
            aux_rewards=task.aux_rewards)
    with atomic_directory(row.final) as scratch:
        policy.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
    return Trained(row.final)


def load_tokenizer(path):
    """The model's tokenizer, padding with its EOS token where it has no pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
