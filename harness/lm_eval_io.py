"""Trading samples with lm-eval (EleutherAI's lm-evaluation-harness), in both directions.

`export_lm_eval_tasks` writes, per harness task, the problems as JSONL (the prompt the harness would send, the
gold answers, how to extract and grade), a task YAML that samples `repeats: n` completions per problem, and one
`utils.py` whose metric is the harness's own extraction, grader and unbiased pass@k: load them with
`lm_eval --include_path DIR --tasks harness_<task>`. `lm_eval_completions` reads lm-eval's `--log_samples`
output for such a task back as completions, so `harness eval --lm-eval-samples FILE` grades and scores them
with every metric of the harness.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from harness.task import DataError, iter_jsonl

UTILS = '''"""Written by `harness export lm-eval`: lm-eval calls these, and they grade with rlvr-harness itself."""

from harness.extraction import extract
from harness.grading import grade
from harness.metrics import pass_at_k


def keep_all(resps, docs):
    """Every one of the `repeats` completions per problem (lm-eval keeps only the first by default)."""
    return resps


def process_results(doc, results):
    completions = results[0] if results and isinstance(results[0], list) else results
    n = len(completions)
    correct = sum(grade(doc["grader"], tuple(doc["golds"]), extract(text, doc["answer_format"], doc["extraction"]))
                  for text in completions)
    return {f"pass_at_{k}": pass_at_k(n, correct, k) for k in doc["ks"] if k <= n}
'''


def _yaml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar


def export_lm_eval_tasks(task_names, out_dir: str | Path, n: int | None = None, k=None, data_dir=None,
                         extraction: str = "strict") -> list[Path]:
    """One `harness_<task>.yaml` (plus its data) per task, and `utils.py`; returns the YAML paths."""
    from harness.evaluate import EvalConfig, plan_tasks
    from harness.prompts import render_prompt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_tasks(EvalConfig(tasks=tuple(task_names), n=n, k=k, data_dir=data_dir, extraction=extraction))
    (out / "utils.py").write_text(UTILS, encoding="utf-8")
    written = []
    for plan in plans:
        name = plan.task.name
        data = out / f"{name}.jsonl"
        with open(data, "w", encoding="utf-8") as f:
            for problem in plan.problems:
                f.write(json.dumps({
                    "id": problem.id, "harness_task": name, "prompt": render_prompt(plan.template, problem.problem),
                    "golds": list(problem.golds), "answer_format": plan.task.answer_format,
                    "grader": plan.task.grader, "extraction": plan.extraction, "ks": list(plan.k),
                }, ensure_ascii=False) + "\n")
        sampling = plan.sampling
        lines = [
            f"task: harness_{name}",
            "dataset_path: json",
            "dataset_kwargs:",
            "  data_files:",
            f"    test: {_yaml_string(str(data.resolve()))}",
            "test_split: test",
            "output_type: generate_until",
            'doc_to_text: "{{prompt}}"',
            'doc_to_target: "{{golds[0]}}"',
            f"repeats: {plan.n}",
            "generation_kwargs:",
            f"  until: {json.dumps(list(sampling.stop))}",
            f"  max_gen_toks: {sampling.max_new_tokens}",
            f"  do_sample: {'true' if sampling.temperature > 0 else 'false'}",
            *([f"  temperature: {sampling.temperature}", f"  top_p: {sampling.top_p}"] if sampling.temperature > 0
              else []),
            "filter_list:",
            "  - name: all",
            "    filter:",
            "      - function: custom",
            "        filter_fn: !function utils.keep_all",
            "process_results: !function utils.process_results",
            "metric_list:",
            *[line for kk in plan.k for line in (f"  - metric: pass_at_{kk}", "    aggregation: mean",
                                                 "    higher_is_better: true")],
            "metadata:",
            "  version: 1.0",
            f"  harness_task: {name}",
            f"  data_sha256: {plan.data.sha256}",
        ]
        path = out / f"harness_{name}.yaml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
    return written


def lm_eval_completions(path: Path) -> Iterator[tuple[str, dict]]:
    """(where, completion row) for every completion of every problem in lm-eval's `--log_samples` JSONL of an
    exported task: {"task", "problem_id", "sample_index", "completion"}."""
    for where, record in iter_jsonl(path):
        doc, responses = record.get("doc"), record.get("filtered_resps")
        if not isinstance(doc, dict) or "id" not in doc or "harness_task" not in doc or responses is None:
            raise DataError(f"{where}: not a sample of a task from `harness export lm-eval` (needs doc.id, "
                            "doc.harness_task and filtered_resps)")
        if responses and isinstance(responses[0], list):  # one list per request: the keep_all filter's form
            responses = responses[0]
        for index, text in enumerate(responses):
            yield where, {"task": doc["harness_task"], "problem_id": doc["id"], "sample_index": index,
                          "completion": text}
