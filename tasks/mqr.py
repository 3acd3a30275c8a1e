"""MQR, MathForge's multi-aspect question reformulation (arXiv 2601.20614; variants.md §7): a data augmentation.

Each training question is rewritten in three ways that keep its gold answer: *background* (an unrelated but
plausible story around it), *term* (an invented abstract term for a central quantity, and the question
restated with it) and *sub-problem* (a key number given turned into an independent sub-problem whose answer
is that number). The augmented set is every original followed by its reformulations (4x the data, as the
paper's MATH set); any variant trains on it, and evaluation never sees it.

Two rewriters fill the same slot. The sandbox arithmetic is rewritten programmatically: the generator knows
each problem's structure, so every rewrite keeps the answer exactly and costs nothing. A real task is
rewritten by a generation backend, one prompt per kind; the paper's rewriting model and prompts are
unconfirmed, so the prompts below are ours. A backend's rewrites are cached on disk, keyed by what decides
them, because a rewrite costs a long generation and the same train set is augmented for every run.

An augmented set is a task of its own (`mqr_task`), so its data sha256 on the protocol card names the exact
reformulations trained on; `sandbox-train-mqr` is registered here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.backends.base import Backend, SamplingParams
from harness.cache import cache_root
from harness.prompts import PromptTemplate, render_prompt
from harness.runstore import read_json, write_json_atomic
from harness.task import TASKS, Problem, Task, register_task, sha256_of_records
from tasks import synthetic

KINDS = ("background", "term", "sub-problem")


class MalformedRewrite(ValueError):
    """A backend's rewrite that cannot be used; the message names the problem, the kind and what was wrong."""


@dataclass(frozen=True)
class Rewrite:
    text: str
    solution: str | None = None  # worked solution of the reformulated problem, where the rewriter knows one


class Rewriter(Protocol):
    def rewrite(self, problems: Sequence[Problem], kind: str) -> list[Rewrite | None]:
        """One rewrite per problem, in order; None drops that reformulation (a skipped malformed rewrite)."""
        ...


def reformulate(problems: Sequence[Problem], rewriter: Rewriter, kinds: Sequence[str] = KINDS) -> list[Problem]:
    """Each problem followed by its reformulations: id '<id>#mqr-<kind>', the same golds, meta naming the
    kind and the source id."""
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"MQR kinds must be a non-empty subset of {', '.join(KINDS)}; got {list(kinds)}")
    rewrites = {kind: rewriter.rewrite(problems, kind) for kind in kinds}
    augmented = []
    for index, problem in enumerate(problems):
        augmented.append(problem)
        for kind in kinds:
            rewrite = rewrites[kind][index]
            if rewrite is not None:
                augmented.append(Problem(id=f"{problem.id}#mqr-{kind}", problem=rewrite.text, golds=problem.golds,
                                         solution=rewrite.solution,
                                         meta={**problem.meta, "mqr": kind, "mqr_source": problem.id}))
    return augmented


def _rng(seed: int, kind: str, text: str) -> random.Random:
    # Seeded by the problem text, not its position, so a rewrite does not change when the set around it does.
    return random.Random(int(hashlib.sha256(f"{seed}:{kind}:{text}".encode()).hexdigest()[:12], 16))


# ----------------------------------------------------------------------------- the sandbox rewriter

_ARITHMETIC = re.compile(r"(\d+)([-+])(\d+)(?:([-+])(\d+))?=\?")

# Stories with no numbers in them: background must not add a quantity a solver could mistake for a given.
BACKGROUND_FRAMES = (
    "Mia is sorting shells on the beach.",
    "A baker writes sums on the flour bags.",
    "Tom keeps the score at the chess club.",
    "A ranger counts birds by the lake.",
    "Ana checks the till at the market.",
    "The class is planting trees in the park.",
    "A sailor logs the waves in a notebook.",
    "Leo stacks crates in the old barn.",
)
# Invented words for the term rewrite: the sandbox tokenizer spells any letters, and none is a math word.
TERM_NAMES = ("zorp", "blick", "quib", "tam", "vex", "drel", "mup", "snark")


class SandboxRewriter:
    """Programmatic MQR for the sandbox arithmetic ('37+48=?', '37+48-19=?').

    background: a story sentence, then the problem unchanged ('Ana checks the till at the market. 37+48=?').
    term: an operand named by an invented word ('A zorp is 48. 37+zorp=?').
    sub-problem: a two-step problem's first step becomes its own question ('First, x=37+48. Then x-19=?');
    in a one-step problem an operand becomes one ('First, x=52-4. Then 37+x=?' for 37+48).
    Choices are seeded by (seed, kind, problem text). The worked solution is the sandbox's column work:
    unchanged for background and term, and for a one-step sub-problem the sub-problem's work followed by the
    restated problem, as the sandbox writes a second step.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed

    def rewrite(self, problems: Sequence[Problem], kind: str) -> list[Rewrite]:
        rewrite_one = {"background": self._background, "term": self._term, "sub-problem": self._sub_problem}[kind]
        return [rewrite_one(problem, _rng(self.seed, kind, problem.problem)) for problem in problems]

    @staticmethod
    def _parts(problem: Problem) -> list[str]:
        """['37', '+', '48', '-', '19'] of '37+48-19=?'."""
        match = _ARITHMETIC.fullmatch(problem.problem)
        if match is None:
            raise ValueError(f"the sandbox MQR rewriter handles arithmetic problems like '37+48=?' or "
                             f"'37+48-19=?'; problem {problem.id!r} is {problem.problem!r}")
        return [part for part in match.groups() if part is not None]

    def _background(self, problem: Problem, rng: random.Random) -> Rewrite:
        self._parts(problem)  # refuses what is not sandbox arithmetic, as the other kinds do
        return Rewrite(f"{rng.choice(BACKGROUND_FRAMES)} {problem.problem}", problem.solution)

    def _term(self, problem: Problem, rng: random.Random) -> Rewrite:
        parts = self._parts(problem)
        name, operand = rng.choice(TERM_NAMES), rng.randrange(0, len(parts), 2)
        value, parts[operand] = parts[operand], name
        return Rewrite(f"A {name} is {value}. {''.join(parts)}=?", problem.solution)

    def _sub_problem(self, problem: Problem, rng: random.Random) -> Rewrite:
        parts = self._parts(problem)
        if len(parts) == 5:  # the sandbox's own solution already solves the first step, then restates the second
            return Rewrite(f"First, x={''.join(parts[:3])}. Then x{''.join(parts[3:])}=?", problem.solution)
        operand = rng.randrange(0, 3, 2)
        # value + borrowed - borrowed: a subtraction that never goes negative, worked like any sandbox problem.
        borrowed = rng.randint(1, 9)
        sub_problem = f"{int(parts[operand]) + borrowed}-{borrowed}"
        restated = "".join(parts)
        parts[operand] = "x"
        work = synthetic.solve(sub_problem)[1].rsplit("\n", 1)[0]  # without its \boxed line
        solution = None if problem.solution is None else f"{work}\n{restated}=?\n{problem.solution}"
        return Rewrite(f"First, x={sub_problem}. Then {''.join(parts)}=?", solution)


# ----------------------------------------------------------------------------- the backend rewriter

# Ours (the paper's prompts are unconfirmed): each asks for the rewrite alone between <problem> tags, so a
# preamble or a solution the model adds anyway is not taken for the problem.
_ANSWER_FORMAT = ("Do not solve the problem. Write only the rewritten problem, between <problem> and "
                  "</problem>.\n\nProblem:\n{problem}")
REWRITE_PROMPTS = {
    "background": "Rewrite the math problem below by adding a short, plausible story or background that is "
                  "unrelated to the mathematics. Keep every number, condition and the question exactly as they "
                  "are, so that the answer does not change. " + _ANSWER_FORMAT,
    "term": "Rewrite the math problem below by inventing a new abstract term for one of its central concepts "
            "or quantities: define the term precisely, then restate the problem using it. The answer must stay "
            "exactly the same. " + _ANSWER_FORMAT,
    "sub-problem": "Rewrite the math problem below by picking one key number that it gives and replacing it "
                   "with an independent sub-problem whose answer is exactly that number, so that a solver must "
                   "solve the sub-problem first. Everything else stays the same, so the final answer does not "
                   "change. " + _ANSWER_FORMAT,
}
# Greedy (ours): a rewrite then depends only on its cache key, not on which problems were generated with it.
REWRITE_SAMPLING = SamplingParams(temperature=0.0, max_new_tokens=1024)

_TAGGED = re.compile(r"<problem>(.*?)</problem>", re.DOTALL)


def parse_rewrite(completion: str, original: str) -> str:
    """The rewritten problem in a completion: the last <problem>...</problem> block, non-empty and changed."""
    blocks = _TAGGED.findall(completion)
    if not blocks:
        raise MalformedRewrite("no <problem>...</problem> block")
    text = blocks[-1].strip()
    if not text:
        raise MalformedRewrite("an empty <problem> block")
    if text == original.strip():
        raise MalformedRewrite("the problem unchanged")
    return text


class BackendRewriter:
    """MQR through a generation backend, each completion cached under `cache_root()/mqr`.

    The cache key is (problem text, kind, model, prompt sha256, sampling parameters, seed): the first four
    decide the rewrite, and a cache that ignored the generation settings would hand a greedy run sampled
    rewrites. Completions are cached as generated, malformed ones too, so a rerun neither regenerates nor
    changes its verdict; each file is written atomically.
    """

    def __init__(self, backend: Backend, *, model: str | None = None, prompts: Mapping[str, str] = REWRITE_PROMPTS,
                 params: SamplingParams = REWRITE_SAMPLING, seed: int = 0, batch_size: int = 64,
                 skip_malformed: bool = False):
        self.backend = backend
        self.model = model or getattr(backend, "model_path", None)
        if not self.model:
            raise ValueError("BackendRewriter needs the rewriting model's name (model=...): it is part of the "
                             "cache key, and this backend has no model_path")
        missing = [kind for kind in KINDS if kind not in prompts]
        if missing:
            raise ValueError(f"rewrite prompts are missing for {', '.join(missing)}")
        self.templates = {kind: PromptTemplate(f"mqr-{kind}", prompts[kind]) for kind in KINDS}
        self.params, self.seed, self.batch_size = params, seed, batch_size
        # Off by default: a dropped reformulation silently shrinks the set, so the caller must ask for it.
        self.skip_malformed = skip_malformed
        self.skipped: list[tuple[str, str, str]] = []  # (problem id, kind, why) of dropped rewrites

    def cache_path(self, problem: str, kind: str) -> Path:
        key = {"problem": problem, "kind": kind, "model": self.model, "prompt_sha256": self.templates[kind].sha256,
               "sampling": self.params.to_card(), "seed": self.seed}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return cache_root() / "mqr" / digest[:2] / f"{digest}.json"

    def rewrite(self, problems: Sequence[Problem], kind: str) -> list[Rewrite | None]:
        paths = [self.cache_path(p.problem, kind) for p in problems]
        pending = {path: problem for path, problem in zip(paths, problems, strict=True) if not path.is_file()}
        self._generate(list(pending.values()), list(pending), kind)
        return [self._read(problem, kind, path) for problem, path in zip(problems, paths, strict=True)]

    def _generate(self, problems: list[Problem], paths: list[Path], kind: str) -> None:
        template = self.templates[kind]
        tokenizer = getattr(self.backend, "tokenizer", None)
        for start in range(0, len(problems), self.batch_size):
            batch = problems[start:start + self.batch_size]
            prompts = [render_prompt(template, p.problem, tokenizer) for p in batch]
            outputs = self.backend.generate(prompts, self.params, self.seed)
            for problem, path, output in zip(batch, paths[start:start + self.batch_size], outputs, strict=True):
                write_json_atomic(path, {"problem": problem.problem, "kind": kind, "model": self.model,
                                         "prompt_sha256": template.sha256, "completion": output.text,
                                         "finish_reason": output.finish_reason})

    def _read(self, problem: Problem, kind: str, path: Path) -> Rewrite | None:
        completion = read_json(path)["completion"]
        try:
            return Rewrite(parse_rewrite(completion, problem.problem))
        except MalformedRewrite as e:
            why = f"MQR {kind} rewrite of problem {problem.id!r} by {self.model} is malformed: {e}"
            if self.skip_malformed:
                self.skipped.append((problem.id, kind, str(e)))
                return None
            preview = completion if len(completion) <= 200 else completion[:200] + "..."
            raise MalformedRewrite(f"{why}. The completion ({preview!r}) is cached in {path}: change the prompt "
                                   "or seed, or pass skip_malformed=True to drop this reformulation") from None


# ----------------------------------------------------------------------------- as a task


def problem_record(problem: Problem) -> dict:
    return {"id": problem.id, "problem": problem.problem, "answers": list(problem.golds),
            "solution": problem.solution, "meta": dict(problem.meta)}


def record_problem(record: dict) -> Problem:
    return Problem(id=record["id"], problem=record["problem"], golds=tuple(record["answers"]),
                   solution=record["solution"], meta=record["meta"])


@dataclass(frozen=True)
class MQRSource:
    """A task's problems followed by their reformulations, as records of their own."""

    base: Task
    rewriter: Rewriter
    kinds: tuple[str, ...] = KINDS

    def load(self, data_dir: Path | None) -> tuple[list[dict], str, str]:
        data = self.base.load(data_dir)
        records = [problem_record(p) for p in reformulate(data.problems, self.rewriter, self.kinds)]
        return records, sha256_of_records(records), f"mqr({','.join(self.kinds)}) of {data.origin}"


def mqr_task(base: Task, rewriter: Rewriter, kinds: Sequence[str] = KINDS, name: str | None = None) -> Task:
    """`base` augmented by MQR: the same template, extractor, grader and limits, 1 + len(kinds) times the data."""
    return dataclasses.replace(base, name=name or f"{base.name}-mqr",
                               description=f"{base.description} Augmented by MQR ({', '.join(kinds)}).",
                               source=MQRSource(base, rewriter, tuple(kinds)), to_problem=record_problem)


SANDBOX_TRAIN_MQR = register_task(mqr_task(TASKS.get("sandbox-train"), SandboxRewriter()))
