"""The evaluation loop: plan (validate everything), generate in seeded batches, grade, append, score.

Each batch's randomness depends only on (seed, task, batch index), so a killed run that is started again
regenerates exactly the samples it had not yet stored and skips the rest: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from harness.backends.base import BACKENDS, SamplingParams
from harness.card import card_hash, library_versions
from harness.extraction import EXTRACTION_MODES, extract
from harness.grading_pool import GradingPool
from harness.models import resolve_model
from harness.prompts import TEMPLATES, PromptTemplate, render_prompt
from harness.report import write_summary_markdown
from harness.runstore import RunDir
from harness.scoring import score_task
from harness.task import TASKS, DataError, Problem, Task, TaskData


@dataclass(frozen=True)
class EvalConfig:
    model: str = "sandbox"  # an alias (`harness list models`) or a local model directory
    tasks: tuple[str, ...] = ("sandbox",)
    n: int | None = None  # samples per problem; None takes each task's default
    k: tuple[int, ...] | None = None  # pass@k / maj@k sizes; None takes each task's default (those <= n)
    limit: int | None = None  # evaluate only the first `limit` problems of each task
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int | None = None  # None takes each task's default
    template: str | None = None  # None takes each task's default
    seed: int = 0
    batch_size: int = 32  # changes the numbers (the seed is per batch), so it is on the card
    backend: str = "hf"
    device: str = "auto"
    # The openai backend: a server's base URL, the model name it serves, the endpoint ("completions" or
    # "chat"), the environment variable holding the API key (never the key itself: it must not reach the
    # card), and how many requests are in flight at once.
    base_url: str | None = None
    api_model: str | None = None
    api_endpoint: str = "completions"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    data_dir: str | None = None
    out: str | None = None  # the run directory; None derives one from the card hash under runs/eval/
    completions: str | None = None  # grade this JSONL of completions instead of generating
    completions_format: str = "harness"  # or "lm-eval": lm-eval's --log_samples of `harness export lm-eval` tasks
    grading_timeout_s: float = 5.0
    embeddings: bool = False  # embedding spread with all-MiniLM-L6-v2 (optional extra)
    # "strict" reads what the task's format asks for (the last \boxed{}); "lenient" also stated answers, the
    # last math span and the last number (harness.extraction.extract_lenient). None: strict for generated
    # samples, lenient for --completions (another system's outputs were not written for our template).
    extraction: str | None = None

    @property
    def extraction_mode(self) -> str:
        # lm-eval samples of exported tasks answered the harness's own prompt, as generated samples do
        lenient = self.completions and self.completions_format == "harness"
        return self.extraction or ("lenient" if lenient else "strict")


COMPLETIONS_CHUNK = 256  # completions graded and appended together


@dataclass
class TaskPlan:
    task: Task
    data: TaskData
    problems: list[Problem]
    template: PromptTemplate
    n: int
    k: tuple[int, ...]
    sampling: SamplingParams
    extraction: str = "strict"


@dataclass
class EvalResult:
    run_dir: Path
    metrics: dict
    generated: int = 0  # samples produced by this call (0 when everything was already stored)
    elapsed_s: float = field(default=0.0)


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def plan_tasks(config: EvalConfig) -> list[TaskPlan]:
    """Everything that can be wrong with the request is found here, before any generation starts."""
    _check_positive("--n", config.n)
    _check_positive("--limit", config.limit)
    _check_positive("--batch-size", config.batch_size)
    if config.extraction_mode not in EXTRACTION_MODES:
        raise ValueError(f"--extraction {config.extraction!r} is not one of {', '.join(EXTRACTION_MODES)}")
    if config.out and Path(config.out).exists() and not Path(config.out).is_dir():
        raise ValueError(f"--out {config.out} is a file, not a run directory; pass another --out")
    if not (config.grading_timeout_s > 0 and math.isfinite(config.grading_timeout_s)):
        raise ValueError(f"--grading-timeout must be a positive number of seconds, got {config.grading_timeout_s}")
    if config.embeddings:
        from harness.diversity import load_default_encoder

        load_default_encoder()  # the optional extra is missing: say so now, not after every sample is graded
    if config.backend == "hf" and not config.completions:
        from harness.backends.hf import check_device

        check_device(config.device)
    if config.backend == "openai" and not config.completions:
        if not (config.base_url and config.api_model):
            raise ValueError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1) and --api-model "
                             "(the model name the server serves)")
        if config.api_endpoint not in ("completions", "chat"):
            raise ValueError(f"--api-endpoint {config.api_endpoint!r} is not completions or chat")
        _check_positive("--concurrency", config.concurrency)
    if not config.tasks:
        raise ValueError("no tasks given; see `harness list tasks`")
    repeated = sorted({name for name in config.tasks if config.tasks.count(name) > 1})
    if repeated:
        raise ValueError(f"--tasks names {', '.join(repeated)} more than once; name each task once")
    plans = []
    for name in config.tasks:
        task = TASKS.get(name)
        n = config.n or task.default_n
        k = tuple(sorted(set(config.k))) if config.k else tuple(x for x in task.default_k if x <= n) or (1,)
        # with --completions and no --n, n is the file's own: fit_plan_to_completions checks k against it
        bad = [x for x in k if x < 1 or (x > n and not (config.completions and config.n is None))]
        if bad:
            raise ValueError(f"k={bad} is impossible with n={n} samples per problem for task {name}: "
                             "every k must be between 1 and n (raise --n or lower --k)")
        template = TEMPLATES.get(config.template or task.template)
        sampling = SamplingParams(temperature=config.temperature, top_p=config.top_p,
                                  max_new_tokens=task.max_new_tokens if config.max_new_tokens is None
                                  else config.max_new_tokens)
        data = task.load(config.data_dir)
        problems = data.problems[: config.limit] if config.limit else data.problems
        if not problems:
            raise DataError(f"task {name} has no problems in {data.origin}")
        plans.append(TaskPlan(task, data, problems, template, n, k, sampling, config.extraction_mode))
    return plans


def open_backend(config: EvalConfig) -> tuple[dict, object]:
    """(the card's model entry, the backend) for generating: a local model through hf or vllm, or a model
    behind an OpenAI-compatible server, named by the server and the name it serves."""
    backend_cls = BACKENDS.get(config.backend)
    if config.backend == "openai":
        backend = backend_cls(base_url=config.base_url, api_model=config.api_model, endpoint=config.api_endpoint,
                              api_key_env=config.api_key_env, concurrency=config.concurrency)
        return {"name": f"openai:{config.api_model}", "base_url": config.base_url}, backend
    resolved = resolve_model(config.model)
    model = {"name": resolved.name, "weights_sha256": resolved.weights_sha256}
    if config.backend == "hf":
        return model, backend_cls(str(resolved.path), device=config.device)
    return model, backend_cls(str(resolved.path))


def batch_seed(seed: int, task: str, batch_index: int) -> int:
    return int(hashlib.sha256(f"{seed}:{task}:{batch_index}".encode()).hexdigest()[:8], 16)


def build_card(config: EvalConfig, plans: list[TaskPlan], model: dict, backend: dict,
               chat_template: str | None) -> dict:
    chat_sha = hashlib.sha256(chat_template.encode()).hexdigest() if chat_template else None
    return {
        "kind": "eval",
        "model": model,
        "backend": {**backend, "batch_size": config.batch_size},
        "seed": config.seed,
        "grading": {"timeout_s": config.grading_timeout_s},
        "embeddings": config.embeddings,
        "versions": library_versions(),
        "tasks": {
            plan.task.name: {
                "data_sha256": plan.data.sha256,
                "num_problems": len(plan.problems),
                "limit": config.limit,
                "template": {"name": plan.template.name, "text": plan.template.text,
                             "sha256": plan.template.sha256, "chat_template_sha256": chat_sha},
                "answer_format": plan.task.answer_format,
                # recorded only when lenient, so that cards (and run directories) from before the option
                # keep their hashes: no "extraction" means strict
                **({"extraction": plan.extraction} if plan.extraction != "strict" else {}),
                "grader": plan.task.grader,
                "n": plan.n,
                "k": list(plan.k),
                "sampling": plan.sampling.to_card(),
            }
            for plan in plans
        },
        "provenance": {
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data": {plan.task.name: plan.data.origin for plan in plans},
        },
    }


def default_run_dir(model_name: str, card: dict) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model_name).name or model_name).strip("-")
    return Path("runs") / "eval" / f"{slug}-{card_hash(card)[:12]}"


def sample_record(plan: TaskPlan, problem: Problem, index: int, text: str, num_tokens: int | None,
                  finish_reason: str | None) -> dict:
    answer = extract(text, plan.task.answer_format, plan.extraction)
    status = "ok" if answer is not None else ("truncated" if finish_reason == "length" else "no_answer")
    return {"task": plan.task.name, "problem_id": problem.id, "sample_index": index, "completion": text,
            "num_tokens": num_tokens, "finish_reason": finish_reason, "answer": answer, "status": status}


def grade_records(records: list[dict], plan: TaskPlan, golds: dict[str, tuple[str, ...]],
                  pool: GradingPool) -> list[dict]:
    requests = [(plan.task.grader, golds[r["problem_id"]], r["answer"]) for r in records]
    verdicts = pool.grade(requests)
    # a sample whose grading hit the time limit or lost its worker (retry included) says so: its "wrong" is
    # not the grader's
    failures = [pool.grading_failure(*request) for request in requests]
    return [{**r, "correct": bool(v), **({"grading": failure} if failure else {})}
            for r, v, failure in zip(records, verdicts, failures, strict=True)]


def generate_task(plan: TaskPlan, backend, run: RunDir, done: set, config: EvalConfig, pool: GradingPool,
                  progress: bool) -> int:
    items = [(problem, i) for problem in plan.problems for i in range(plan.n)]
    golds = {p.id: p.golds for p in plan.problems}
    tokenizer = getattr(backend, "tokenizer", None)
    prompts = {p.id: render_prompt(plan.template, p.problem, tokenizer) for p in plan.problems}
    already = sum((plan.task.name, p.id, i) in done for p, i in items)
    generated = 0
    with tqdm(total=len(items), initial=already, desc=f"{plan.task.name} samples", unit="sample",
              disable=not progress, dynamic_ncols=True) as bar:
        for b in range(0, len(items), config.batch_size):
            batch = items[b: b + config.batch_size]
            missing = [j for j, (p, i) in enumerate(batch) if (plan.task.name, p.id, i) not in done]
            if not missing:
                continue
            # The whole batch is regenerated even when part of it is stored, so its numbers match a run that
            # was never interrupted; only the missing samples are written.
            outputs = backend.generate([prompts[p.id] for p, _ in batch], plan.sampling,
                                       seed=batch_seed(config.seed, plan.task.name, b // config.batch_size))
            records = [sample_record(plan, batch[j][0], batch[j][1], outputs[j].text, outputs[j].num_tokens,
                                     outputs[j].finish_reason) for j in missing]
            run.append_samples(grade_records(records, plan, golds, pool))
            generated += len(records)
            bar.update(len(records))
    return generated


def read_completions(path: Path, plans: list[TaskPlan], lm_eval: bool = False) -> dict[str, list[dict]]:
    """A JSONL of {problem_id, completion[, task][, sample_index][, num_tokens][, finish_reason]} per line, or
    (`lm_eval`) lm-eval's --log_samples output for tasks from `harness export lm-eval`. Every row is checked
    before anything is graded: a bad one is named by file and line."""
    from harness.lm_eval_io import lm_eval_completions
    from harness.task import iter_jsonl

    by_task: dict[str, list[dict]] = {plan.task.name: [] for plan in plans}
    known = {plan.task.name: {p.id for p in plan.problems} for plan in plans}
    next_index: dict[tuple[str, str], int] = {}
    first_seen: dict[tuple[str, str, int], str] = {}
    for where, row in (lm_eval_completions(path) if lm_eval else iter_jsonl(path)):
        if not isinstance(row, dict) or "problem_id" not in row or "completion" not in row:
            raise DataError(f"{where}: each line needs 'problem_id' and 'completion'")
        if not isinstance(row["completion"], str):
            raise DataError(f"{where}: 'completion' must be a string, got {type(row['completion']).__name__}; "
                            "write an empty string for a system that produced nothing")
        try:
            row["completion"].encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate (\ud800): the run store could not write it
            raise DataError(f"{where}: 'completion' holds a character UTF-8 cannot store ({e.reason} at "
                            f"{e.start}); fix the producer's encoding") from None
        task = row.get("task") or (plans[0].task.name if len(plans) == 1 else None)
        if task is None:
            raise DataError(f"{where}: no 'task' field, and several tasks were asked for; add 'task' to "
                            "each line or evaluate one task at a time")
        if task not in by_task:
            raise DataError(f"{where}: task {task!r} is not among --tasks {sorted(by_task)}")
        problem_id = str(row["problem_id"])
        if problem_id not in known[task]:
            raise DataError(f"{where}: problem_id {problem_id!r} is not a problem of {task} "
                            "(or it is past --limit)")
        index = row.get("sample_index", next_index.get((task, problem_id), 0))
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise DataError(f"{where}: 'sample_index' must be a whole number >= 0, got {index!r}")
        key = (task, problem_id, index)
        if key in first_seen:
            raise DataError(f"{where}: sample {index} of {problem_id} appears twice (first at "
                            f"{first_seen[key]}); each (problem_id, sample_index) once")
        first_seen[key] = where
        next_index[(task, problem_id)] = index + 1
        by_task[task].append({**row, "task": task, "problem_id": problem_id, "sample_index": index})
    return by_task


def fit_plan_to_completions(plan: TaskPlan, rows: list[dict], n_asked: int | None, k_asked) -> TaskPlan:
    """The completions must cover every planned problem with samples 0..n-1 (n as asked, or the file's own
    when --n is not given); a partial or uneven file would score a different benchmark than its card names."""
    indices: dict[str, list[int]] = {p.id: [] for p in plan.problems}
    for row in rows:
        indices[row["problem_id"]].append(row["sample_index"])
    missing = [pid for pid, found in indices.items() if not found]
    if missing:
        raise DataError(f"the completions cover {len(indices) - len(missing)} of the {len(indices)} problems of "
                        f"{plan.task.name} (first missing: {missing[0]}); complete the file, or pass --limit L "
                        "when it covers the first L problems")
    counts = {len(found) for found in indices.values()}
    n = n_asked if n_asked is not None else max(counts)
    uneven = next((pid for pid, found in indices.items() if sorted(found) != list(range(n))), None)
    if uneven is not None:
        raise DataError(f"{plan.task.name}: problem {uneven} has samples {sorted(indices[uneven])[:8]}, not 0..{n - 1}; "
                        "every problem needs the same n samples (--n sets n; without it, the file's largest count)")
    k = tuple(sorted(set(k_asked))) if k_asked else tuple(x for x in plan.task.default_k if x <= n) or (1,)
    if max(k) > n:
        raise ValueError(f"k={[x for x in k if x > n]} is impossible with the completions' n={n} samples per problem "
                         f"of {plan.task.name}: lower --k")
    return dataclasses.replace(plan, n=n, k=k)


def run_eval(config: EvalConfig, progress: bool = True, command: str | None = None) -> EvalResult:
    started = time.time()
    plans = plan_tasks(config)
    if not progress:  # --quiet: transformers' weight-loading bars too
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    if config.completions:
        path = Path(config.completions)
        if not path.is_file():
            raise DataError(f"completions file {path} not found")
        if config.completions_format not in ("harness", "lm-eval"):
            raise ValueError(f"completions format {config.completions_format!r} is not harness or lm-eval")
        completions = read_completions(path, plans, lm_eval=config.completions_format == "lm-eval")
        plans = [fit_plan_to_completions(plan, completions[plan.task.name], config.n, config.k) for plan in plans]
        from harness.task import sha256_of_file

        model = {"name": f"completions:{path.name}"}
        backend_info, backend = {"backend": "completions", "sha256": sha256_of_file(path)}, None
        if config.completions_format != "harness":  # recorded only when not the default: older cards keep hashes
            backend_info["format"] = config.completions_format
        chat_template = None
    else:
        model, backend = open_backend(config)
        backend_info = backend.describe()
        chat_template = getattr(getattr(backend, "tokenizer", None), "chat_template", None)
    card = build_card(config, plans, model, backend_info, chat_template)
    card["command"] = command
    run = RunDir.open(config.out or default_run_dir(model["name"], card), card)
    stored, repeats = run.read_unique_samples()
    if repeats:
        print(f"harness: {run.samples_path} holds {repeats} repeated samples (written twice by two processes at "
              "once); the first copy of each is used", file=sys.stderr)
    done = {(s["task"], s["problem_id"], s["sample_index"]) for s in stored}
    generated = 0
    with GradingPool(timeout_s=config.grading_timeout_s) as pool:
        try:
            for plan in plans:
                if backend is None:
                    by_id = {p.id: p for p in plan.problems}
                    rows = [r for r in completions[plan.task.name]
                            if (r["task"], r["problem_id"], r["sample_index"]) not in done]
                    golds = {i: p.golds for i, p in by_id.items()}
                    for start in range(0, len(rows), COMPLETIONS_CHUNK):  # stored as graded: a kill loses one chunk
                        records = [sample_record(plan, by_id[r["problem_id"]], r["sample_index"], r["completion"],
                                                 r.get("num_tokens"), r.get("finish_reason"))
                                   for r in rows[start: start + COMPLETIONS_CHUNK]]
                        run.append_samples(grade_records(records, plan, golds, pool))
                        generated += len(records)
                else:
                    generated += generate_task(plan, backend, run, done, config, pool, progress)
        finally:  # the engine's processes are not needed for scoring, and not left behind by an error
            if hasattr(backend, "close"):
                backend.close()
        samples, _ = run.read_unique_samples()
        metrics = {"card_hash": card_hash(card), "tasks": {}}
        for plan in plans:
            task_samples = [s for s in samples if s["task"] == plan.task.name]
            metrics["tasks"][plan.task.name] = score_task(task_samples, plan, pool, embeddings=config.embeddings)
    run.write_metrics(metrics)
    write_summary_markdown(run.path / "summary.md", card, metrics)
    return EvalResult(run_dir=run.path, metrics=metrics, generated=generated, elapsed_s=time.time() - started)
