"""MQR (variants.md §7): sandbox reformulations keep every answer, rewrites are deterministic and traceable,
a backend's rewrites are cached and never regenerated, malformed rewrites fail clearly, the augmented set is
a task."""

import re

import pytest

from harness.backends.base import Generation
from harness.extraction import extract
from harness.task import TASKS, GeneratedSource, Problem, Task
from tasks import synthetic
from tasks.mqr import (
    KINDS,
    BackendRewriter,
    MalformedRewrite,
    SandboxRewriter,
    mqr_task,
    reformulate,
)


@pytest.fixture(scope="module")
def sandbox_problems():
    """Every level, and the level-1 corner cases (a one-digit operand, a zero)."""
    records = synthetic.generate_arithmetic("train", 150, seed=11)
    corners = [{"id": f"corner-{i}", "problem": f"{e}=?", "answer": str(synthetic.evaluate(e)),
                "solution": synthetic.solve(e)[1], "level": 1} for i, e in enumerate(["7+0", "0+5", "9-9", "30-0"])]
    return [synthetic.arithmetic_problem(r) for r in records + corners]


DEFINITION = re.compile(r"(?:A (\w+) is |First, (\w+)=)([\d+-]+)\.")


def value_of(text: str) -> int:
    """Reads a sandbox reformulation independently of the rewriter: definitions ('A zorp is 48.',
    'First, x=52-4.') substituted into the final 'expression=?', evaluated left to right."""
    names = {(m[1] or m[2]): synthetic.evaluate(m[3]) for m in DEFINITION.finditer(text)}
    question = re.search(r"([\w+-]+)=\?$", text)[1]
    for name, value in names.items():
        question = re.sub(rf"\b{name}\b", str(value), question)
    return synthetic.evaluate(question)


def test_every_sandbox_reformulation_keeps_the_answer(sandbox_problems):
    augmented = reformulate(sandbox_problems, SandboxRewriter())
    assert len(augmented) == 4 * len(sandbox_problems)
    originals = {p.id: p for p in sandbox_problems}
    for problem in augmented:
        source = originals[problem.meta.get("mqr_source", problem.id)]
        assert problem.golds == source.golds
        assert value_of(problem.problem) == int(source.golds[0]), problem
        # The worked solution reaches the same boxed answer, and a rewrite is not its original.
        assert extract(problem.solution, "boxed") == source.golds[0]
        if problem is not source:
            assert problem.id == f"{source.id}#mqr-{problem.meta['mqr']}" and problem.problem != source.problem
            assert problem.meta["level"] == source.meta["level"]


def test_each_kind_has_its_shape(sandbox_problems):
    two_step = next(p for p in sandbox_problems if p.meta["level"] == 4)
    one_step = next(p for p in sandbox_problems if p.meta["level"] == 3)
    rewriter = SandboxRewriter()
    background, = rewriter.rewrite([two_step], "background")
    story = background.text.removesuffix(f" {two_step.problem}")
    assert story != background.text and story.endswith(".") and not re.search(r"\d", story)
    term, = rewriter.rewrite([one_step], "term")
    assert re.fullmatch(r"A ([a-z]+) is \d+\. (\d+[-+]\1|\1[-+]\d+)=\?", term.text), term.text
    split, = rewriter.rewrite([two_step], "sub-problem")
    a_op_b, op_c = re.fullmatch(r"(\d+[-+]\d+)([-+]\d+)=\?", two_step.problem).groups()
    assert split.text == f"First, x={a_op_b}. Then x{op_c}=?"
    # A one-step problem's operand becomes a subtraction whose work comes first, then the restated problem.
    sub, = rewriter.rewrite([one_step], "sub-problem")
    inner = re.match(r"First, x=(\d+-\d+)\. Then ", sub.text)[1]
    inner_work, rest = sub.solution.split(f"\n{one_step.problem}\n")
    assert int(inner_work.rsplit(":", 1)[1]) == synthetic.evaluate(inner) and rest == one_step.solution


def test_rewrites_are_deterministic_and_seeded(sandbox_problems):
    first = reformulate(sandbox_problems, SandboxRewriter(seed=0))
    assert reformulate(sandbox_problems, SandboxRewriter(seed=0)) == first
    assert [p.problem for p in reformulate(sandbox_problems, SandboxRewriter(seed=1))] != [p.problem for p in first]
    # A problem's rewrite depends on its text, not on the set around it.
    assert reformulate(sandbox_problems[5:6], SandboxRewriter(seed=0)) == first[20:24]


def test_a_subset_of_kinds_and_bad_kinds(sandbox_problems):
    augmented = reformulate(sandbox_problems[:3], SandboxRewriter(), kinds=("term",))
    assert [p.meta.get("mqr") for p in augmented] == [None, "term"] * 3
    with pytest.raises(ValueError, match="subset of background, term, sub-problem"):
        reformulate(sandbox_problems, SandboxRewriter(), kinds=("story",))


def test_the_sandbox_rewriter_refuses_what_it_cannot_read():
    relation = synthetic.relation_problem(synthetic.generate_relation("train", 1, seed=3)[0])
    with pytest.raises(ValueError, match=r"'37\+48=\?'.*sandbox-relation-train-00000"):
        SandboxRewriter().rewrite([relation], "term")


def test_the_augmented_sandbox_is_a_registered_task():
    task = TASKS.get("sandbox-train-mqr")
    base = TASKS.get("sandbox-train")
    assert (task.grader, task.answer_format, task.template, task.max_new_tokens) == (
        base.grader, base.answer_format, base.template, base.max_new_tokens)


def test_an_mqr_task_loads_with_its_own_data_hash(sandbox_problems):
    records = synthetic.generate_arithmetic("train", 5, seed=2)
    base = Task(name="tiny", description="Tiny.", source=GeneratedSource(lambda: records, "tiny"),
                answer_format="boxed", grader="math", to_problem=synthetic.arithmetic_problem)
    data = mqr_task(base, SandboxRewriter()).load()
    base_data = base.load()
    assert len(data.problems) == 4 * len(base_data.problems) and data.sha256 != base_data.sha256
    assert data.problems[::4] == base_data.problems and data.origin.startswith("mqr(")
    assert mqr_task(base, SandboxRewriter(), kinds=("term",)).load().sha256 != data.sha256


class FakeBackend:
    """Rewrites by wrapping the problem in a story, or answers with whatever `reply` makes of the problem."""

    model_path = "fake/rewriter-1b"

    def __init__(self, reply=None):
        self.reply = reply or (lambda problem: f"Sure.\n<problem>Once upon a time: {problem}</problem>")
        self.prompts: list[str] = []

    def generate(self, prompts, params, seed):
        self.prompts += prompts
        return [Generation(self.reply(p.rsplit("Problem:\n", 1)[1]), 10, "stop") for p in prompts]

    def describe(self):
        return {"backend": "fake"}


@pytest.fixture
def real_problems():
    return [Problem(id=f"math-{i}", problem=f"Find $x$ if $x^2 = {i * i}$ and $x > 0$.", golds=(str(i),))
            for i in range(1, 6)]


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    return tmp_path


def test_backend_rewrites_are_cached_and_not_generated_twice(real_problems, own_cache):
    backend = FakeBackend()
    first = reformulate(real_problems, BackendRewriter(backend))
    assert len(backend.prompts) == 3 * len(real_problems)
    assert all(kind_prompt in " ".join(backend.prompts) for kind_prompt in ("unrelated", "abstract term", "sub-problem"))
    again = FakeBackend()
    assert reformulate(real_problems, BackendRewriter(again)) == first and again.prompts == []
    assert first[1].problem == f"Once upon a time: {real_problems[0].problem}" and first[1].golds == ("1",)
    files = list((own_cache / "mqr").rglob("*"))
    assert sum(f.suffix == ".json" for f in files) == 3 * len(real_problems)
    assert not [f for f in files if f.is_file() and f.name.startswith(".")]  # no temp file left behind
    # What decides a rewrite is in the key: another model, seed or prompt generates anew.
    for rewriter in (BackendRewriter(FakeBackend(), model="another/model"), BackendRewriter(FakeBackend(), seed=1),
                     BackendRewriter(FakeBackend(), prompts={k: "Rewrite it.\nProblem:\n{problem}" for k in KINDS})):
        rewriter.rewrite(real_problems[:2], "term")
        assert len(rewriter.backend.prompts) == 2


def test_a_malformed_rewrite_fails_clearly_or_is_skipped_on_request(real_problems, own_cache):
    untagged = FakeBackend(reply=lambda problem: f"Here is a harder version: {problem} (with a story)")
    with pytest.raises(MalformedRewrite, match=r"term rewrite of problem 'math-1' by fake/rewriter-1b is malformed: "
                                               r"no <problem>.*cached in .*skip_malformed=True"):
        BackendRewriter(untagged).rewrite(real_problems, "term")
    # The malformed completions stay cached: a rerun keeps its verdict without generating, and may skip them.
    rewriter = BackendRewriter(FakeBackend(), skip_malformed=True)
    augmented = reformulate(real_problems, rewriter, kinds=("term",))
    assert augmented == real_problems and rewriter.backend.prompts == []
    assert [(problem_id, kind) for problem_id, kind, _ in rewriter.skipped] == [(p.id, "term") for p in real_problems]
    unchanged = FakeBackend(reply=lambda problem: f"<problem>{problem}</problem>")
    with pytest.raises(MalformedRewrite, match="unchanged"):
        BackendRewriter(unchanged).rewrite(real_problems, "background")
    empty = FakeBackend(reply=lambda problem: "<problem> </problem>")
    with pytest.raises(MalformedRewrite, match="empty"):
        BackendRewriter(empty).rewrite(real_problems, "sub-problem")


def test_a_backend_without_a_model_name_is_refused():
    backend = FakeBackend()
    backend.model_path = None
    with pytest.raises(ValueError, match="model="):
        BackendRewriter(backend)
