"""The sandbox: tokenizer, tiny model, synthetic tasks and the cached warm start (with a tiny config)."""

from __future__ import annotations

import json
import re
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.aug_templates import template_pool
from harness.markers import marker_count
from harness.models import weights_sha256
from harness.sandbox import warmstart_data
from harness.sandbox.model import SandboxModelConfig, build_model, parameter_count
from harness.sandbox.tokenizer import build_tokenizer
from harness.sandbox.warmstart import (
    RECORD_NAME,
    SHIPPED_DIR,
    WEIGHTS_NAME,
    WarmStartConfig,
    build_untrained_sandbox,
    ensure_warm_start,
    last_boxed,
)
from harness.task import TASKS, sha256_of_file, sha256_of_records
from tasks import synthetic
from tasks.column_check import check_column_work, process_reward

TINY_MODEL = SandboxModelConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2)
TINY_WARM_START = WarmStartConfig(model=TINY_MODEL, max_steps=4, warmup_steps=2, eval_interval=2,
                                  batch_size=8, validation_size=16, pass_at_1_samples=1,
                                  pass_at_1_problems=16, problems_per_template=1)


def test_tokenizer_round_trips_through_save_and_auto_tokenizer(tmp_path):
    build_tokenizer().save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    record = synthetic.sandbox_relation_test()[0]
    text = record["problem"] + record["solution"]
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id  # the prompt is encoded as the warm start saw it
    assert len(ids) == len(text) + 1  # one token per character
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.padding_side == "left"
    batch = tokenizer(["1+1=?", "12+345=?"], padding=True)
    assert batch["input_ids"][0][0] == tokenizer.pad_token_id  # left padding for batched generation


def test_model_size_and_special_tokens_match_the_tokenizer():
    model, tokenizer = build_model(), build_tokenizer()
    assert 0.5e6 <= parameter_count(model) <= 5e6
    assert model.config.vocab_size == len(tokenizer)
    assert (model.config.eos_token_id, model.config.pad_token_id) == (tokenizer.eos_token_id,
                                                                        tokenizer.pad_token_id)
    same = build_model()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), same.parameters(), strict=True))  # seeded init


def test_generators_are_deterministic():
    assert synthetic.generate_arithmetic("test", 20, seed=7) == synthetic.generate_arithmetic("test", 20, seed=7)
    assert synthetic.generate_arithmetic("test", 20, seed=7) != synthetic.generate_arithmetic("test", 20, seed=8)
    assert synthetic.generate_relation("train", 20, seed=7) == synthetic.generate_relation("train", 20, seed=7)
    assert sha256_of_records(synthetic.sandbox_test()) == sha256_of_records(synthetic.sandbox_test())


def test_train_and_test_never_overlap():
    for test, train in ((synthetic.sandbox_test(), synthetic.warm_start_train()),
                        (synthetic.sandbox_test(), synthetic.sandbox_train_pool()),
                        (synthetic.sandbox_relation_test(), synthetic.sandbox_relation_train())):
        test_problems, train_problems = {r["problem"] for r in test}, {r["problem"] for r in train}
        assert len(test_problems) == len(test) and len(train_problems) == len(train)  # no duplicates either
        assert not test_problems & train_problems
        assert {synthetic.split_of(p) for p in test_problems} == {"test"}
        assert {synthetic.split_of(p) for p in train_problems} == {"train"}


def test_arithmetic_solutions_end_in_the_correct_boxed_answer():
    records = synthetic.sandbox_test() + synthetic.warm_start_train() + synthetic.sandbox_train_pool()
    assert {r["level"] for r in records} == set(synthetic.LEVELS)
    for record in records:
        expression = record["problem"].removesuffix("=?")
        assert re.fullmatch(r"\d+[-+]\d+([-+]\d+)?", expression), record
        assert record["answer"] == str(eval(expression))
        assert record["solution"].endswith(f"\\boxed{{{record['answer']}}}")
        assert last_boxed(record["solution"]) == record["answer"]


def test_column_work_is_right_on_edge_cases():
    assert synthetic.solve("105-98") == ("7", "15-8=7 :7\n10-1-9=0 :07\n1-1-0=0 :007\n\\boxed{7}")
    assert synthetic.solve("5+37") == ("42", "5+7=12 :2\n0+3+1=4 :42\n\\boxed{42}")
    assert synthetic.solve("999+1")[1].endswith("carry 1 :1000\n\\boxed{1000}")
    assert synthetic.solve("45-43+7") == ("9", "5-3=2 :2\n4-4=0 :02\n2+7=?\n2+7=9 :9\n\\boxed{9}")


def _arrives_at(solution: str) -> int:
    """The value a worked solution's own lines arrive at; each line's new digit is the one it wrote."""
    value = None
    for line in solution.split("\n")[:-1]:
        if " :" in line:
            fact, running = line.split(" :")
            if "=" in fact:
                assert running[0] == str(int(fact.split("=")[1]) % 10), line
            value = int(running)
    return value


def test_a_careless_teacher_slips_at_its_rate_and_follows_through():
    import random

    slips = synthetic.Slips(0.1, random.Random(0))
    records = synthetic.warm_start_train()[:3000]
    wrong = lines = slipped_lines = 0
    for record in records:
        expression = record["problem"].removesuffix("=?")
        answer, solution = synthetic.solve(expression, slips)
        assert last_boxed(solution) == answer == str(_arrives_at(solution))  # the boxed answer is what the work says
        wrong += answer != record["answer"]
        for mine, clean in zip(solution.split("\n"), record["solution"].split("\n"), strict=False):  # a slip can add a carry line
            if "=" in mine and not mine.endswith("=?") and mine.split("=")[0] == clean.split("=")[0]:
                lines += 1
                written, right = int(mine.split("=")[1].split()[0]), int(clean.split("=")[1].split()[0])
                slipped_lines += written != right
                assert abs(written - right) <= 1, (mine, clean)
    assert 0.08 < slipped_lines / lines < 0.12  # about `rate` of the column lines, never by more than one
    assert 0.15 < wrong / len(records) < 0.4  # so about a quarter of the teacher's answers are wrong
    assert synthetic.solve("347+85") == synthetic.solve("347+85", synthetic.Slips(0.0, random.Random(0)))


def test_relation_answers_are_the_relation_that_holds():
    symbols = dict(synthetic.RELATION_OPTIONS)
    for record in synthetic.sandbox_relation_test() + synthetic.sandbox_relation_train():
        first_line = record["problem"].split("\n")[0]
        left, right = (eval(side) for side in first_line.split(" () "))
        expected = "C" if left == right else ("D" if left < right else "E")
        assert record["answer"] == expected and record["symbol"] == symbols[expected]
        assert record["solution"].endswith(f"\\boxed{{{expected}}}")
        assert synthetic.RELATION_CHOICES in record["problem"]


def test_registered_tasks_load():
    sandbox = TASKS.get("sandbox").load()
    assert 200 <= len(sandbox.problems) <= 300 and sandbox.origin.startswith("generated:")
    relation = TASKS.get("sandbox-relation").load().problems[0]
    assert relation.golds[0] in "ABCDEF" and len(relation.golds) == 2
    tokenizer = build_tokenizer()
    longest = max(len(tokenizer(synthetic.with_self_check(r["solution"], r["problem"][:-2])).input_ids)
                  for r in synthetic.warm_start_train())
    assert longest < TASKS.get("sandbox").max_new_tokens  # a self-check line included


def test_untrained_sandbox_loads_with_auto_classes(tmp_path):
    path = build_untrained_sandbox(tmp_path / "untrained", TINY_MODEL)
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["1+1=?", "12+34=?"], return_tensors="pt", padding=True)
    output = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert output.shape == (2, batch["input_ids"].shape[1] + 3)


def test_warm_start_is_cached_atomically_and_loads_with_auto_classes():
    path = ensure_warm_start(TINY_WARM_START, progress=False)
    record = json.loads((path / RECORD_NAME).read_text())
    assert record["steps"] <= TINY_WARM_START.max_steps
    assert 0.0 <= record["test_pass_at_1"]["sampled"] <= 1.0
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no scratch left behind

    started = time.monotonic()
    assert ensure_warm_start(TINY_WARM_START, progress=False) == path
    assert time.monotonic() - started < 1.0

    other = WarmStartConfig(**{**TINY_WARM_START.__dict__, "seed": 1})
    assert other.sha256() != TINY_WARM_START.sha256()

    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.hidden_size == TINY_MODEL.hidden_size
    batch = tokenizer(["37+48=?"], return_tensors="pt")
    assert model.generate(**batch, max_new_tokens=2, do_sample=False).shape[1] == batch["input_ids"].shape[1] + 2


@pytest.mark.parametrize("field", ["lr", "max_steps"])
def test_config_changes_change_the_cache_path(field):
    changed = WarmStartConfig(**{**TINY_WARM_START.__dict__, field: getattr(TINY_WARM_START, field) * 2})
    assert changed.sha256() != TINY_WARM_START.sha256()


# ------------------------------------------------------------------------------- the RL train pool


def test_the_rl_train_pool_is_small_balanced_and_new_to_the_warm_start():
    pool = TASKS.get("sandbox-train").load()
    per_level = synthetic.POOL_SIZE_PER_LEVEL
    assert pool.size == len(pool.problems) == per_level * len(synthetic.LEVELS)
    assert [p.meta["level"] for p in pool.problems].count(4) == per_level
    warm_start = {r["problem"] for r in synthetic.warm_start_train()}
    assert not warm_start & {p.problem for p in pool.problems}
    # The default budget (GRPO: 25 steps x 16 prompts) draws each problem more than twice: repeats to act on.
    assert 2 <= 25 * 16 / pool.size <= 6


# ------------------------------------------------------------------------ the process reward


def test_teacher_work_is_all_right_lines_relation_work_included():
    for record in synthetic.sandbox_test() + synthetic.sandbox_relation_test():
        right, counted = check_column_work(record["solution"])
        assert right == counted > 0, record
    level_4 = next(r for r in synthetic.sandbox_test() if r["level"] == 4)
    with_check = synthetic.with_self_check(level_4["solution"], level_4["problem"][:-2])
    assert check_column_work(with_check) == check_column_work(level_4["solution"])  # the self-check is no column line


def test_a_slipped_line_is_wrong_and_the_work_that_follows_from_it_is_right():
    # 347+85 = 432: the units line slipped to 13, so the tens line carries 1 from it (right) and so on.
    assert check_column_work("7+5=13 :3\n4+8+1=13 :33\n3+0+1=4 :433\n\\boxed{433}") == (2, 3)
    # 105-98: '10-1-9=0' pays the borrow back, '15-8' borrows a ten; a wrong borrow is a wrong line.
    assert check_column_work("15-8=7 :7\n10-1-9=0 :07\n1-1-0=0 :007\n\\boxed{7}") == (3, 3)
    # No borrow where one is needed, then a borrow paid back that was never taken; the last line follows.
    assert check_column_work("5-8=7 :7\n10-1-9=0 :07\n1-1-0=0 :007") == (1, 3)
    # A miscopied running answer, a carry not passed on, and a carry line that is missing.
    assert check_column_work("7+5=12 :2\n3+4+1=8 :28") == (1, 2)
    assert check_column_work("7+5=12 :2\n4+8=12 :22") == (1, 3)  # no '+1', and then no 'carry 1' line
    assert check_column_work("9+1=10 :0\n9+0+1=10 :00\ncarry 1 :100") == (3, 3)


def test_a_restated_step_must_start_from_the_first_steps_value():
    work = "7+8=15 :5\n3+4+1=8 :85\n{}-19=?\n15-9=6 :6\n8-1-1=6 :66\n\\boxed{{66}}"  # 37+48-19
    assert check_column_work(work.format(85)) == (5, 5)
    assert check_column_work(work.format(86)) == (4, 5)


def test_process_reward_is_the_share_of_right_lines_and_zero_without_work():
    problem = TASKS.get("sandbox").load().problems[0]
    assert process_reward(problem, "7+5=13 :3\n4+8+1=13 :33\n3+0+1=4 :433") == pytest.approx(2 / 3)
    assert process_reward(problem, "\\boxed{432}") == 0.0
    assert process_reward(problem, "7+5=12 :2\n4+8+1=1x :32") == 0.5  # a malformed column line is wrong
    assert process_reward(problem, "let me check: 7+5=12") == 0.0


def test_sandbox_tasks_declare_the_process_reward_and_benchmarks_none():
    for name in ("sandbox", "sandbox-train", "sandbox-relation", "sandbox-relation-train", "sandbox-train-mqr"):
        assert set(TASKS.get(name).aux_rewards) == {"process"}
    assert not TASKS.get("math500").aux_rewards


# ------------------------------------------------------------- what the warm start learns from


def test_a_self_check_line_restates_the_work_and_the_reflection_detector_counts_it():
    import random

    answer, solution = synthetic.solve("37+48", synthetic.Slips(1.0, random.Random(0)))  # every line slips
    checked = synthetic.with_self_check(solution, "37+48")
    assert checked.split("\n")[-2] == f"{synthetic.SELF_CHECK_PREFIX}37+48={answer}"
    assert last_boxed(checked) == answer != "85"  # it restates what the work arrived at, right or wrong
    assert [marker_count(checked), marker_count(solution)] == [1, 0]


def test_warm_start_data_holds_self_checks_and_prompt_aug_templates_at_their_shares():
    config = WarmStartConfig()
    records = warmstart_data.arithmetic_records(config)
    self_checked = [r for r in records if synthetic.SELF_CHECK_PREFIX in r["solution"]]
    templated = [r for r in records if r["template"]]
    assert abs(len(self_checked) / len(records) - config.self_check_rate) < 0.02
    assert abs(len(templated) / len(records) - config.template_fraction) < 0.02
    pool = {t.name: t for t in template_pool(config.templates)}
    assert {r["template"] for r in templated} == set(pool)  # every one of prompt-aug's templates
    for record in templated[:200]:
        bare = next(line for line in record["prompt"].split("\n") if line.endswith("=?"))
        assert record["prompt"] == pool[record["template"]].render(bare)  # exactly as prompt-aug renders it
        assert record["solution"].startswith("\n") != record["prompt"].endswith("\n")  # work on its own line
    for record in self_checked[:200]:
        check_line = record["solution"].split("\n")[-2]
        assert check_line.endswith("=" + last_boxed(record["solution"]))
    # Changing one share leaves the other's draws alone (each has its own seeded stream).
    fewer_templates = warmstart_data.arithmetic_records(WarmStartConfig(template_fraction=0.05))
    assert [r["solution"].lstrip("\n") for r in fewer_templates] == [r["solution"].lstrip("\n") for r in records]


# ------------------------------------------------------------------------- the shipped warm start


def test_the_shipped_warm_start_is_the_default_configs_and_intact():
    record = json.loads((SHIPPED_DIR / RECORD_NAME).read_text())
    assert record["config_sha256"] == WarmStartConfig().sha256(), (
        "the default warm-start config changed: rebuild and ship it with `python -m harness.sandbox.ship`")
    assert sha256_of_file(SHIPPED_DIR / WEIGHTS_NAME) == record["weights_sha256"]
    assert (SHIPPED_DIR / WEIGHTS_NAME).stat().st_size < 5e6
    assert 0.2 <= record["test_pass_at_1"]["sampled"] <= 0.6  # room for RL either way
    assert record["template_test_pass_at_1"]["sampled"] > 0  # prompt-aug's groups can carry signal
    assert record["test_pass_at_1"]["marker_rate"] > 0.02  # reflection has markers to count before RL


def test_the_default_warm_start_installs_the_shipped_weights_without_building():
    started = time.monotonic()
    path = ensure_warm_start(progress=False)
    assert time.monotonic() - started < 10  # a copy, not a 5-minute build
    record = json.loads((SHIPPED_DIR / RECORD_NAME).read_text())
    assert weights_sha256(path) == weights_sha256(SHIPPED_DIR)
    assert sha256_of_file(path / WEIGHTS_NAME) == record["weights_sha256"]
    AutoTokenizer.from_pretrained(path)
    assert AutoModelForCausalLM.from_pretrained(path).config.max_position_embeddings == 384


def test_a_cache_of_an_earlier_shipped_build_is_not_taken_for_the_current_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    config = WarmStartConfig()
    stale = tmp_path / "warmstart" / config.sha256()[:16]  # where a cache from before the weights sha named it sits
    build_untrained_sandbox(stale)
    (stale / RECORD_NAME).write_text("{}")
    path = ensure_warm_start(config, progress=False)
    assert path != stale
    assert sha256_of_file(path / WEIGHTS_NAME) == json.loads((SHIPPED_DIR / RECORD_NAME).read_text())["weights_sha256"]
