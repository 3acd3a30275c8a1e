"""The sandbox warm start: a short supervised run that gives the tiny model a pass@1 RL can move.

An untrained policy never produces a correct `\\boxed{}`, so every GRPO group is all-zero reward and carries
no signal. A few CPU minutes of supervised training on a careless teacher's worked solutions (see
`harness.sandbox.warmstart_data` for what it sees and why) bring it to a sampled pass@1 of 42% on the
`sandbox` test split (greedy 70%; by level 75 / 58 / 24 / 12%): easy problems mostly solved and hard ones
mostly not, which is where group-relative advantages have something to work with, and slips that only a
reward can teach it to drop. Under prompt-aug's templates it samples 5% (greedy 13%), and 10% of its sampled
solutions carry a self-check line. The build takes about 9 minutes on a 2-core machine shared with other
work (1,500 steps on one thread), and runs only where the shipped weights are not the config's.

The result is a plain Hugging Face directory (config.json, model.safetensors, tokenizer files and a
`warmstart.json` record), cached under `cache_root()/warmstart/<config sha>` and written atomically, so
every later command loads it through `from_pretrained` and a killed build leaves nothing behind.

Which guarantee holds (issue 9). The default warm start is shipped in `harness/sandbox/shipped/`: when the
config's sha256 is the shipped record's, the cache is filled with those bytes (checked against the
record's sha256) instead of a build, so every machine, whatever its CPU or library versions, starts RL
from the same weights and the card names the same weights hash. The builder itself reproduces the shipped
tensors bit for bit under the same library versions (`constraints.txt`) on the same CPU kind (the record's
`built_with`; three builds here gave one sha256, and `tests/test_sandbox_e2e.py` checks it wherever the
environment matches the record's, in full or on the first `FINGERPRINT_STEPS` steps). Across CPU kinds it
does not: torch and MKL pick kernels by the processor (AVX2 or AVX-512, Intel or AMD), and they round
differently, which 1,500 steps amplify (measured, 200 steps on one thread: loss 0.794 here, 0.832 with
`ATEN_CPU_CAPABILITY=avx2`, 0.843 with `MKL_CBWR=COMPATIBLE`, 0.811 on an Intel Xeon with torch 2.11).
Nor, on some processors, across thread counts (that Xeon: 0.811 on one thread, 0.844 on two; here
bit-identical), so the build pins its thread count, where recipe 1 switched between 1 and 2 by speed.
Nothing depends on the machine's speed any more (recipe 1 also stopped on a time limit). Library versions
mattered less than feared: transformers 5.20 and 5.24 trained bit-identical weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import random
import shutil
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from harness.aug_templates import template_pool
from harness.cache import atomic_directory, cache_root
from harness.sandbox import warmstart_data as data
from harness.sandbox.measure import last_boxed, measure_pass_at_1
from harness.sandbox.model import SandboxModelConfig, build_model, parameter_count
from harness.sandbox.tokenizer import build_tokenizer
from harness.task import sha256_of_file

__all__ = ["RECORD_NAME", "SHIPPED_DIR", "WarmStartConfig", "build_untrained_sandbox", "early_fingerprint",
           "ensure_warm_start", "last_boxed", "tensors_sha256", "train_and_save", "warm_start_path"]

# Bump when the training recipe changes in a way the config does not show, so old caches are not reused.
# 2: self-check lines, prompt-aug templates, 384 positions, one thread, no time stop (issue 9).
RECIPE_VERSION = 2
RECORD_NAME = "warmstart.json"
WEIGHTS_NAME = "model.safetensors"
# The default warm start's files, as built by `train_and_save` (see the module docstring).
SHIPPED_DIR = Path(__file__).with_name("shipped")
SHIPPED_FILES = ("config.json", "generation_config.json", WEIGHTS_NAME, RECORD_NAME)
# The record also fingerprints the weights after this many steps, so a machine can check in a minute, not a
# whole build, that it trains as the shipped build's did.
FINGERPRINT_STEPS = 200


@dataclass(frozen=True)
class WarmStartConfig:
    """Everything that decides the warm-start weights; its sha names the cache directory."""

    # Shape and init seed of the tiny Llama.
    model: SandboxModelConfig = field(default_factory=SandboxModelConfig)
    # Share of training examples drawn from `sandbox-relation-train` (the rest arithmetic), so the relation
    # task starts above chance too; small, because arithmetic is what the default eval measures.
    relation_fraction: float = 0.1
    # Share of each arithmetic level's `warm_start_train` problems (levels 1-4) the warm start sees. The hard
    # levels are thinned so that they stay mostly out of reach of the warm-started model: that is the
    # headroom RL is measured on (RL trains on its own pool, `sandbox-train`).
    level_weights: tuple[float, ...] = (1.0, 1.0, 0.3, 0.2)
    # The warm start imitates a careless teacher: each column line of an arithmetic worked solution is off
    # by one with this probability, and the work goes on from the slip. Converged supervised training
    # reproduces the slip rate (it cannot tell a slip from the truth: both are demonstrations), so sampling
    # at temperature 1 slips too; only a reward for the right answer teaches it not to. That is the gap
    # RL from verifiable rewards closes in practice (demonstrations with mistakes in them), and a slip is
    # the same move in every problem, so what RL learns on train problems carries over to test ones.
    # Measured (recipe 1, one seed, 2 cores): with 0.1 the warm start samples 36% (greedy 52%) and 40 GRPO
    # steps at lr 5e-5 gain +3.4 points on the test split (paired t = 4.3); with no slips (44% sampled, 50%
    # greedy) 40-160 steps moved it by no more than the noise (+-1.5 points), because its errors were
    # specific to each problem and a fix on train problems did not carry over.
    slip_rate: float = 0.1
    # Share of arithmetic solutions that end with a self-check line ('let me check: 37+48=85') before the
    # answer (ours), so the reflection-marker rate before RL is measurable: 10% of sampled test solutions.
    self_check_rate: float = 0.15
    # Share of arithmetic prompts rendered with one of prompt-aug's templates (`templates`, drawn uniformly;
    # ours), so accuracy under them is above zero and prompt-aug's groups carry signal (5% sampled, 13%
    # greedy). A templated prompt is 10-20x a bare one; length-bucketed batches keep the build's time about
    # the same as without them (520 s against 512 s of training on the same shared machine).
    template_fraction: float = 0.15
    # prompt-aug's template pool spec ('paper': the paper's 13, as `harness.aug_templates.template_pool` reads it).
    templates: str = "paper"
    # Examples held out from the end of each train split to decide when to stop. They come from the
    # TRAIN split: the `sandbox` test split is never trained or selected on.
    validation_size: int = 256
    # AdamW peak learning rate. 2e-3 with batch 32 learnt carries soonest of what was tried (3e-3 and a
    # narrower MLP stalled at a held-out loss of 0.2; 1e-2 diverges on the digit facts).
    lr: float = 2e-3
    # Linear warm-up steps before the cosine decay; keeps the first high-lr steps from blowing up.
    warmup_steps: int = 50
    weight_decay: float = 0.01
    # Sequences per optimizer step. 32 rather than 64: on 2 cores a 64-batch step costs ~2x, and the
    # column moves are learnt per update, not per example.
    batch_size: int = 32
    # The cosine schedule's horizon and the hard cap on steps. A shorter horizon decays the rate before
    # carries are learnt: 1000 steps ended at a held-out loss of 0.19 and a 4% pass@1; 1500 steps with the
    # level weights above end at 0.022 and 44% sampled (recipe 1 without slips; best held-out loss at step
    # 1400, so converged); with the teacher's slips at 0.042 (the slips' own entropy) and 36% sampled.
    # Recipe 2 (self-checks, templates): best held-out 0.056 at step 1400, 42% sampled. Pass@1 is a steep
    # function of the last few thousandths of loss: a variant that put the templated prompts' newline in the
    # prompt instead of the solution ended at 0.060 and 27% sampled. So small differences between machines
    # become large ones in pass@1, which is why the weights are shipped (module docstring).
    max_steps: int = 1500
    # Stop as soon as the held-out loss reaches this (None: never, the default). Off by default: the warm
    # start trains until the held-out loss stops improving (patience, or the cosine schedule reaching 0),
    # so that a later RL gain is not simply more supervised training. The task mix, not early stopping,
    # puts the converged model in the 20-60% band (levels 3-4 stay mostly out of reach). Measured while
    # tuning: pass@1 follows the held-out loss closely (0.19 -> 4%, 0.072 -> 34%, 0.03 -> 56% sampled).
    target_held_out_loss: float | None = None
    # Held-out loss is computed every `eval_interval` steps ...
    eval_interval: int = 50
    # ... and training stops after `patience` evaluations without an improvement of `min_delta`.
    patience: int = 4
    min_delta: float = 1e-3
    # Seed of the data order and dropout-free training; with the model seed it fixes the result.
    seed: int = 0
    # Samples per test problem for the recorded sampled pass@1 (temperature 1, no top-k/top-p).
    pass_at_1_samples: int = 4
    # How many test problems those measurements use (None: all of them); tests cut it to stay fast.
    pass_at_1_problems: int | None = None
    # Test problems per template for the recorded accuracy under prompt-aug's templates (one sample each).
    problems_per_template: int = 10
    # Intra-op threads of the build. One: the result does not depend on it (1 and 2 threads gave
    # bit-identical weights), but on a shared 2-core machine two OpenMP threads wait on each other and a step
    # became 10x slower (measured: 100 steps took 19 s on one thread, 176 s on two while another process
    # kept a core busy), while on an idle machine two threads are only ~1.6x faster.
    num_threads: int = 1

    def sha256(self) -> str:
        payload = json.dumps({"recipe": RECIPE_VERSION, "config": dataclasses.asdict(self),
                              "data": _data_sha256()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def _data_sha256() -> str:
    """Data the warm start trains on: a change to the generators is a new warm start."""
    from harness.task import sha256_of_records
    from tasks import synthetic

    return hashlib.sha256((sha256_of_records(synthetic.warm_start_train())
                           + sha256_of_records(synthetic.sandbox_relation_train())).encode()).hexdigest()


def warm_start_path(config: WarmStartConfig = WarmStartConfig()) -> Path:
    """Where `config`'s warm start is cached. Named by the shipped weights' sha256 too when they are `config`'s,
    so a cache filled from an earlier shipped build (the same config rebuilt on other kernels) is never
    taken for the one shipped now."""
    config_sha = config.sha256()  # hashes the warm start's ~20k training records: once
    shipped = shipped_record(config, config_sha)
    name = config_sha[:16]
    return cache_root() / "warmstart" / (f"{name}-{shipped['weights_sha256'][:12]}" if shipped else name)


def shipped_record(config: WarmStartConfig, config_sha: str | None = None) -> dict | None:
    """The shipped warm start's record when it was built from `config` (whose sha256 may be given), else None."""
    record_path = SHIPPED_DIR / RECORD_NAME
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    return record if record["config_sha256"] == (config_sha or config.sha256()) else None


def ensure_warm_start(config: WarmStartConfig = WarmStartConfig(), progress: bool = True) -> Path:
    """The cached warm-start directory for `config`: the shipped weights when `config` is theirs, else built."""
    final = warm_start_path(config)
    if (final / RECORD_NAME).is_file():
        return final
    with atomic_directory(final) as scratch:
        if not install_shipped(config, scratch):
            train_and_save(config, scratch, progress=progress)
    return final


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """One hash over named tensors (names, dtypes, shapes, bytes); of a weights file, over its tensors, not its
    header, which a library version may word differently: what "the builder reproduces the weights" compares."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def install_shipped(config: WarmStartConfig, out: Path) -> bool:
    """Copy the shipped warm start into `out` when it was built from `config`; False when it was not."""
    record = shipped_record(config)
    if record is None:
        return False
    for name in SHIPPED_FILES:
        shutil.copyfile(SHIPPED_DIR / name, out / name)
    if sha256_of_file(out / WEIGHTS_NAME) != record["weights_sha256"]:
        raise RuntimeError(f"{SHIPPED_DIR / WEIGHTS_NAME} does not match the sha256 in its {RECORD_NAME}: the "
                           "checkout is damaged (a Git LFS pointer?); restore it with `git checkout -- "
                           f"{SHIPPED_DIR}`")
    build_tokenizer().save_pretrained(out)
    return True


def build_untrained_sandbox(path: str | Path, model: SandboxModelConfig | None = None) -> Path:
    """An untrained sandbox model + tokenizer directory, in a second: for tests that only need the plumbing."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    build_model(model or SandboxModelConfig()).save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return path


def build_environment() -> dict:
    """What the builder's result depends on besides its config: library versions and the CPU's kernels."""
    import numpy
    import safetensors
    import tokenizers
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), None)
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "safetensors": safetensors.__version__,
            "numpy": numpy.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _measure(model, tokenizer, config: WarmStartConfig) -> dict:
    """The record's figures on the test splits: arithmetic pass@1 and marker rate, the same under prompt-aug's
    templates (one sample per problem), and relation pass@1."""
    from tasks import synthetic

    test = synthetic.sandbox_test()
    arithmetic = [{"prompt": r["problem"], **r} for r in test[: config.pass_at_1_problems]]
    templates = template_pool(config.templates)
    templated = [{**r, "prompt": templates[i % len(templates)].render(r["problem"]),
                  "template": templates[i % len(templates)].name}
                 for i, r in enumerate(test[: config.problems_per_template * len(templates)])]
    relation = [{"prompt": r["problem"], **r} for r in synthetic.sandbox_relation_test()[: config.pass_at_1_problems]]
    under_templates = measure_pass_at_1(model, tokenizer, templated, synthetic.ARITHMETIC_MAX_NEW_TOKENS, 1,
                                        config.seed, group_by="template")
    relation_figures = measure_pass_at_1(model, tokenizer, relation, synthetic.RELATION_MAX_NEW_TOKENS, 1, config.seed)
    return {
        "test_pass_at_1": measure_pass_at_1(model, tokenizer, arithmetic, synthetic.ARITHMETIC_MAX_NEW_TOKENS,
                                            config.pass_at_1_samples, config.seed),
        "template_test_pass_at_1": under_templates,
        "relation_test_pass_at_1": {key: relation_figures[key] for key in ("sampled", "greedy", "problems")},
    }


@torch.no_grad()
def _held_out_loss(model, examples, pad_id: int, batch_size: int = 256) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = data.collate(examples[start : start + batch_size], pad_id)
        tokens = int((batch["labels"][:, 1:] != -100).sum())
        total += float(model(**batch).loss) * tokens
        count += tokens
    model.train()
    return total / count


def _learning_rate(config: WarmStartConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@contextmanager
def _threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_and_save(config: WarmStartConfig, out: Path, progress: bool = True) -> dict:
    """Train per `config`, write the HF directory into `out`, and return the record written beside it."""
    out = Path(out)
    started = time.monotonic()
    with _threads(config.num_threads):
        run = _train(config, progress)
        train_seconds = time.monotonic() - started
        model, tokenizer = run.pop("model"), run.pop("tokenizer")
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        figures = _measure(model, tokenizer, config)
    record = {
        "config": dataclasses.asdict(config),
        "config_sha256": config.sha256(),
        "recipe_version": RECIPE_VERSION,
        "weights_sha256": sha256_of_file(out / WEIGHTS_NAME),
        "tensors_sha256": tensors_sha256(load_file(out / WEIGHTS_NAME)),
        "built_with": build_environment(),
        **run,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        **figures,
    }
    (out / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return record


def early_fingerprint(config: WarmStartConfig, steps: int = FINGERPRINT_STEPS) -> str:
    """`tensors_sha256` of the weights after the build's first `steps` steps: a one-minute check that this
    machine trains as the shipped build's did (where kernels differ, 200 steps already differ)."""
    with _threads(config.num_threads):
        return _train(config, progress=False, stop_after=steps)["fingerprint"]


def _train(config: WarmStartConfig, progress: bool, stop_after: int | None = None) -> dict:
    """The supervised run: the model with the best held-out loss (or, with `stop_after`, the model after that
    many steps), its tokenizer, and the run's statistics."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    tokenizer = build_tokenizer()
    model = build_model(config.model)
    model.train()
    train, validation = data.training_examples(config, tokenizer, rng)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.98))

    best_loss, best_state, best_step, stale, losses, history = math.inf, None, 0, 0, [], []
    cursor, step, stop_reason, fingerprint = 0, 0, "max_steps", None
    bar = tqdm(total=config.max_steps, desc="sandbox warm start", disable=not progress, unit="step")
    batches: list[list] = []
    while step < config.max_steps:
        if cursor == len(batches):  # next epoch: a new seeded order
            batches, cursor = data.length_bucketed_batches(train, config.batch_size, rng), 0
        batch = data.collate(batches[cursor], tokenizer.pad_token_id)
        cursor += 1
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(config, step)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        losses.append(loss.detach().item())
        bar.update(1)
        if step == (stop_after or FINGERPRINT_STEPS):
            fingerprint = tensors_sha256(model.state_dict())
            if stop_after:
                bar.close()
                return {"model": model, "tokenizer": tokenizer, "fingerprint": fingerprint}
        if step % config.eval_interval == 0 or step == config.max_steps:
            held_out = _held_out_loss(model, validation, tokenizer.pad_token_id)
            history.append((step, round(held_out, 4)))
            if held_out < best_loss - config.min_delta:
                best_loss, best_step, stale = held_out, step, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}", held_out=f"{held_out:.3f}")
            if config.target_held_out_loss is not None and held_out <= config.target_held_out_loss:
                stop_reason = "target_held_out_loss"
                break
            if stale >= config.patience:
                stop_reason = "patience"
                break
    bar.close()
    if best_state is not None:  # keep the weights with the best held-out loss, not the last ones
        model.load_state_dict(best_state)
    model.eval()
    return {"model": model, "tokenizer": tokenizer, "parameters": parameter_count(model),
            f"tensors_sha256_at_step_{FINGERPRINT_STEPS}": fingerprint, "steps": step, "best_step": best_step,
            "stop_reason": stop_reason, "final_train_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
            "best_held_out_loss": best_loss, "held_out_history": history}
