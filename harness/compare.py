"""`harness compare`: train each variant x seed from the same start under one budget, evaluate each under one
protocol, and render the leaderboard.

Every row is a directory under the compare directory: `warm-start/` (the untrained starting point, a row of
its own so that "RL helped" is a visible comparison) and `<variant>-seed<s>/` with `train/` (card,
checkpoint, ledger, train_log.jsonl, final model) and `eval/` (an ordinary eval run). Each stage resumes:
a killed compare started again with the same arguments skips finished rows and continues the others from
their last checkpoint, and refuses a directory made under different settings.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.budget import Budget
from harness.card import card_hash, library_versions, machine_info
from harness.engines import DEFAULT_ENGINE, ENGINES, Pending, Trained, TrainRow
from harness.evaluate import EvalConfig, run_eval
from harness.models import resolve_model
from harness.prompts import TEMPLATES
from harness.runstore import RunDir, write_json_atomic
from harness.task import TASKS

# The default budget is compute, the one figure every variant spends alike whatever its mix of generation and
# updates (harness.budget's FLOPs model). On the sandbox it was set as what 40 GRPO steps of 16 prompts x 8 samples
# spent under the first shared schedule of one update epoch (2.44e12 FLOPs, about 6.1e10 a step), plus under half
# a step; under today's two epochs a GRPO step costs about 9.8e10 and GRPO takes 25 steps. Every row stops when its next step could exceed
# it, so every row ends within one step of the same compute: DAPO's discarded generations, R3's replays and
# prompt-aug's longer prompts are paid from the same account, and a variant whose steps cost less trains more of
# them. Another model gets the same compute per parameter (the same token passes), to 3 significant figures: FLOPs
# grow with the parameter count. The count limits stay available (`--budget rollouts=5120,update_tokens=...`).
DEFAULT_BUDGET = Budget(flops=2_490_000_000_000)
SANDBOX_PARAMETERS = 816_768  # the sandbox's N (harness.budget.parameter_count), which DEFAULT_BUDGET is for
# Evaluation samples per problem: 8 x 240 problems puts a pass@1 difference of ~2.5 points at p < 0.05 for
# the paired test on this task (ours).
DEFAULT_N, DEFAULT_K = 8, (1, 2, 4, 8)
PROTOCOLS = ("shared", "paper")


@dataclass(frozen=True)
class CompareConfig:
    variants: tuple[str, ...] = ("grpo", "n-grpo", "dgpo")
    model: str = "sandbox"
    train_task: str = "sandbox-train"
    eval_tasks: tuple[str, ...] = ("sandbox",)
    budget: Budget | None = None  # None: `default_budget` of the starting model
    seeds: tuple[int, ...] = (0,)
    n: int = DEFAULT_N
    k: tuple[int, ...] = DEFAULT_K
    limit: int | None = None  # evaluate only the first L problems of each eval task (smoke runs)
    max_new_tokens: int | None = None  # eval generation limit; None takes each eval task's own
    out: str | None = None  # default runs/compare/<name>
    name: str | None = None  # leaderboard name; default "sandbox" for the sandbox model, else derived
    leaderboard_dir: str = "leaderboards"
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)  # variant -> {field: raw value}
    data_dir: str | None = None
    device: str = "cpu"
    warm_start_row: bool = True
    # Label every row's paired difference is measured against (a variant or "warm start"); default the first
    # variant, so `--variants all` tests every variant against grpo.
    baseline: str | None = None
    # "shared": every variant trains under the shared update schedule (GRPOConfig's ppo_epochs and
    # minibatches), so a comparison changes mechanisms, not optimisation; "paper": each variant's own
    # schedule (its config's PAPER_SCHEDULE), as its paper trained.
    protocol: str = "shared"
    # Generation backend of every evaluation (warm start and trained rows): "hf" or "vllm".
    eval_backend: str = "hf"
    # Training engine of every row (harness.engines.ENGINES: the built-in trainer, TRL, verl, or a plugin's).
    engine: str = DEFAULT_ENGINE


def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """['dgpo.lr=1e-5', 'grpo.kl_beta=0.001'] -> {'dgpo': {'lr': '1e-5'}, 'grpo': {'kl_beta': '0.001'}}."""
    overrides: dict[str, dict[str, str]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        variant, dot, name = target.partition(".")
        if not sep or not dot or not variant or not name:
            raise ValueError(f"bad --set {item!r}: expected VARIANT.FIELD=VALUE, e.g. --set dgpo.lr=1e-5 "
                             "(VARIANT may be 'all')")
        overrides.setdefault(variant.strip(), {})[name.strip()] = value.strip()
    return overrides


def base_variant(label: str) -> str:
    """The variant a row label trains: 'grpo@aa' -> 'grpo' (a second label for the same variant, for A/A tests)."""
    return label.partition("@")[0]


def parse_variant_labels(text: str) -> list[str]:
    """'grpo,dgpo,grpo@aa' -> the row labels, each checked before any work. 'all' (anywhere in the list) stands for
    every registered variant, grpo first (the baseline the others are tested against). VARIANT@TAG trains VARIANT
    again under its own label and seeds disjoint from VARIANT's (`label_seeds`): listing grpo,grpo@aa is an A/A
    test, two labels the statistics should not call different."""
    from harness.variants import VARIANTS

    labels: list[str] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "all":
            labels += ["grpo", *(name for name in VARIANTS.names() if name != "grpo")]
            continue
        variant, at, tag = part.partition("@")
        VARIANTS.get(variant)
        if at and not re.fullmatch(r"[A-Za-z0-9_-]+", tag):
            raise ValueError(f"--variants {part!r}: a label is VARIANT or VARIANT@TAG, the tag letters, digits, "
                             "'_' and '-' (e.g. grpo@aa)")
        labels.append(part)
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"--variants names {', '.join(repeated)} twice; to train a variant twice give the second a "
                         "tag of its own (e.g. grpo,grpo@aa: an A/A test)")
    return labels


def label_seeds(label: str, labels: tuple[str, ...], seeds: tuple[int, ...]) -> tuple[int, ...]:
    """The training seeds of `label`: --seeds for a plain variant; for the i-th tagged label of a variant, --seeds
    shifted by i x (max seed + 1), so that grpo and grpo@aa never share a seed (seeds 0,1,2: grpo@aa 3,4,5)."""
    if "@" not in label:
        return seeds
    tagged = [other for other in labels if "@" in other and base_variant(other) == base_variant(label)]
    shift = (tagged.index(label) + 1) * (max(seeds) + 1)
    return tuple(seed + shift for seed in seeds)


def variant_configs(config: CompareConfig) -> dict[str, object]:
    """Each row label's config with the overrides applied (`--set VARIANT.FIELD` applies to VARIANT's tagged labels
    too, `--set VARIANT@TAG.FIELD` to that label alone); every name is checked before any work starts."""
    if not config.variants:
        raise ValueError("--variants is empty; name at least one variant (`harness list variants`), or 'all'")
    known = {*config.variants, *map(base_variant, config.variants)}
    unknown = [v for v in config.overrides if v != "all" and v not in known]
    if unknown:
        raise ValueError(f"--set names {unknown}, which are not among --variants {list(config.variants)}")
    if config.protocol not in PROTOCOLS:
        raise ValueError(f"--protocol {config.protocol!r} is not one of {', '.join(PROTOCOLS)}")
    from harness.overrides import apply_overrides, paper_schedule
    from harness.variants import VARIANTS

    ENGINES.get(config.engine)  # an unknown engine is named with the known ones
    configs = {}
    for name in config.variants:
        trainer = VARIANTS.get(base_variant(name))
        values = {**config.overrides.get("all", {}), **config.overrides.get(base_variant(name), {}),
                  **config.overrides.get(name, {})}
        start = trainer.Config() if config.protocol == "shared" else paper_schedule(trainer.Config())
        configs[name] = apply_overrides(start, values)
    return configs


def compare_name(config: CompareConfig) -> str:
    if config.name:
        return config.name
    return "sandbox" if config.model == "sandbox" else Path(config.model).name.replace("/", "-")


@dataclass(frozen=True)
class CompareResult:
    """The leaderboard's path once every row is trained; until then (an engine that trains elsewhere) None, and
    the rows that wait, with what to do."""

    leaderboard: Path | None
    pending: tuple[Pending, ...] = ()


def run_compare(config: CompareConfig, progress: bool = True, command: str | None = None) -> CompareResult:
    """Run every row and render the leaderboard."""
    from harness.leaderboard import render_leaderboard, seed_plan_of_rows, seed_plan_text
    from harness.variants import VARIANTS

    started = time.monotonic()
    configs = variant_configs(config)
    check_settings(config)
    train_task = TASKS.get(config.train_task)
    engine = ENGINES.get(config.engine)
    for label, variant_config in configs.items():
        engine.check(base_variant(label), variant_config)
    train_data = train_task.load(config.data_dir)
    model = resolve_model(config.model)  # builds the sandbox warm start once (cached)
    if config.budget is None:
        config = dataclasses.replace(config, budget=default_budget(model.path))
    for label, variant_config in configs.items():
        VARIANTS.get(base_variant(label)).check_budget(variant_config, train_task.max_new_tokens, config.budget)

    name = compare_name(config)
    out = Path(config.out or Path("runs") / "compare" / name)
    protocol = protocol_card(config, configs, model, train_task, train_data)
    protocol_hash = card_hash(protocol)
    write_json_atomic(out / "protocol.json", {**protocol, "hash": protocol_hash, "command": command,
                                              "machine": machine_info()})
    # Seed-major: every variant's first seed before any variant's second, so a compare stopped part-way (or still
    # running) already ranks every variant, on fewer seeds.
    seeds = {label: label_seeds(label, config.variants, config.seeds) for label in config.variants}
    rows = [(label, seeds[label][i]) for i in range(len(config.seeds)) for label in config.variants]
    total = len(rows) + (1 if config.warm_start_row else 0)
    row_dirs = []
    pending: list[Pending] = []  # rows an engine trains elsewhere (verl), prepared and not yet read back
    stage = 0

    def announce(what: str) -> None:
        if progress:
            print(f"[{stage}/{total}] {what}  ({time.monotonic() - started:.0f} s so far)", flush=True)

    if config.warm_start_row:
        stage += 1
        announce("evaluating the starting model (warm-start row)")
        row = out / "warm-start"
        _evaluate(config, model.path, row, progress)
        write_json_atomic(row / "row.json", {"label": "warm start", "variant": None, "seed": None,
                                             "command": command, "protocol_hash": protocol_hash})
        row_dirs.append(row)
    for label, seed in rows:
        stage += 1
        row = out / f"{label}-seed{seed}"
        announce(f"training {label} (seed {seed}), then evaluating it")
        trained = train_row(base_variant(label), configs[label], config, model, train_task, train_data, seed,
                            row / "train", progress)
        if isinstance(trained, Pending):
            pending.append(trained)
            continue
        _evaluate(config, trained.final, row, progress)
        write_json_atomic(row / "row.json", {"label": label, "variant": base_variant(label), "seed": seed,
                                             "command": command, "protocol_hash": protocol_hash})
        row_dirs.append(row)
    if pending:
        return CompareResult(None, tuple(pending))
    leaderboard = Path(config.leaderboard_dir) / f"{name}.md"
    render_leaderboard(row_dirs, leaderboard, title=f"Leaderboard: {name}",
                       baseline=config.baseline or config.variants[0])
    print(seed_plan_text(seed_plan_of_rows(row_dirs)), flush=True)  # a result, not progress: --quiet too
    if progress:
        print(f"done in {time.monotonic() - started:.0f} s; leaderboard: {leaderboard}", flush=True)
    return CompareResult(leaderboard)


def check_settings(config: CompareConfig) -> None:
    """Refuse, before any work, settings that cannot make a compare (each with what to give instead)."""
    if not config.seeds:
        raise ValueError("--seeds is empty; give at least one seed, e.g. --seeds 0,1,2")
    if any(seed < 0 for seed in config.seeds):
        raise ValueError(f"--seeds {','.join(map(str, config.seeds))}: seeds are non-negative integers")
    if config.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", config.name):
        raise ValueError(f"--name {config.name!r}: a leaderboard name is letters, digits, '.', '_' and '-' (no "
                         "folders); it names leaderboards/<name>.md and runs/compare/<name>")
    TASKS.get(config.train_task)
    for task in config.eval_tasks:
        TASKS.get(task)
    baseline = config.baseline or config.variants[0]
    if baseline not in (*config.variants, *(("warm start",) if config.warm_start_row else ())):
        raise ValueError(f"--baseline {baseline!r} is not a row of this compare; the rows: "
                         f"{', '.join(config.variants)}{', warm start' if config.warm_start_row else ''}")
    bad_k = [k for k in config.k if not 1 <= k <= config.n]
    if bad_k:
        raise ValueError(f"k={bad_k} impossible with n={config.n} eval samples per problem (every k must be 1..n)")


def protocol_card(config: CompareConfig, configs: dict, model, train_task, train_data) -> dict:
    """What every row of the compare shares, hashed into its protocol: model, data, evaluation, budget, seeds,
    each row's config and the engine's versions."""
    from harness.variants import VARIANTS

    return {
        "kind": "compare", "model": {"name": model.name, "weights_sha256": model.weights_sha256},
        "train_task": {"name": train_task.name, "data_sha256": train_data.sha256, "size": train_data.size},
        "eval": {"tasks": list(config.eval_tasks), "n": config.n, "k": list(config.k), "limit": config.limit,
                 "max_new_tokens": config.max_new_tokens},
        "budget": config.budget.to_dict(), "seeds": list(config.seeds), "protocol": config.protocol,
        "variants": {v: card_config(c, VARIANTS.get(base_variant(v))) for v, c in configs.items()},
        "versions": library_versions(*ENGINES.get(config.engine).packages),
        # recorded only when not the default, so compare directories from before the option keep their hashes
        **({"eval_backend": config.eval_backend} if config.eval_backend != "hf" else {}),
        **({"engine": config.engine} if config.engine != DEFAULT_ENGINE else {}),
    }


def default_budget(model_dir: Path) -> Budget:
    """DEFAULT_BUDGET per parameter of the model in `model_dir`: the sandbox's own budget for the sandbox, the same
    token passes for a larger model (to 3 significant figures)."""
    from harness.models import parameter_count_of

    flops = DEFAULT_BUDGET.flops * parameter_count_of(model_dir) / SANDBOX_PARAMETERS
    return Budget(flops=int(float(f"{flops:.3g}")))


def _evaluate(config: CompareConfig, model_path: Path, row: Path, progress: bool) -> None:
    eval_config = EvalConfig(model=str(model_path), tasks=config.eval_tasks, n=config.n, k=config.k,
                             limit=config.limit, max_new_tokens=config.max_new_tokens, data_dir=config.data_dir,
                             out=str(row / "eval"), device=config.device, backend=config.eval_backend)
    run_eval(eval_config, progress=progress, command=None)


def card_config(variant_config, trainer_cls=None) -> dict:
    """A variant's config for its card. The rollout engine's fields are written only when vLLM generates (with
    the built-in sampler tis_cap is inert), so runs from before they existed keep their card hashes; a variant
    that cannot roll out through an engine (`trainer_cls.engine_rollouts` False) is recorded as it runs."""
    fields = dataclasses.asdict(variant_config)
    if fields.get("rollout_engine") != "builtin" and trainer_cls is not None and not trainer_cls.engine_rollouts:
        fields["rollout_engine"] = "builtin"  # what it ran with; its train log says why
    if fields.get("rollout_engine") == "builtin":
        for name in ("rollout_engine", "rollout_dtype", "tis_cap"):
            fields.pop(name, None)
    return fields


def mechanism_card(trainer_cls) -> dict:
    """What the card records of a variant's probes: every one it logs, the primary one and its materiality
    threshold (the leaderboard's `mechanism` column reads them)."""
    probe, materiality = trainer_cls.primary()
    return {"probes": list(dict.fromkeys([probe, *trainer_cls.mechanism, "update_change", "clipped"])),
            "primary": probe, "materiality": materiality}


def train_row(variant: str, variant_config, config: CompareConfig, model, train_task, train_data, seed: int,
              train_dir: Path, progress: bool):
    """Train one variant at one seed on the compare's engine (resuming if a checkpoint is there): its final model
    (`Trained`), or `Pending` when the engine trains elsewhere."""
    from harness.variants import VARIANTS

    engine = ENGINES.get(config.engine)
    template = TEMPLATES.get(variant_config.template or train_task.template)
    card = {"kind": "train", "variant": variant, "seed": seed, "protocol": config.protocol,
            **({"engine": config.engine} if config.engine != DEFAULT_ENGINE else {}),
            "config": card_config(variant_config, VARIANTS.get(variant)), "mechanism": mechanism_card(VARIANTS.get(variant)),
            "budget": config.budget.to_dict(),
            "model": {"name": model.name, "weights_sha256": model.weights_sha256},
            "train_task": {"name": train_task.name, "data_sha256": train_data.sha256, "size": train_data.size},
            "template": {"name": template.name, "sha256": template.sha256}, "device": config.device,
            "versions": library_versions(*engine.packages)}
    RunDir.open(train_dir, card)  # refuses a directory trained under other settings
    row = TrainRow(variant, variant_config, model, train_task, train_data, template, config.budget, seed, train_dir,
                   config.device, progress)
    if (row.final / "config.json").is_file():
        return Trained(row.final)
    return engine.train(row)


