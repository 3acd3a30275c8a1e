"""verl as the `verl` engine (`harness compare --engine verl`): a row is prepared here (data, variant spec, Hydra
overrides, launch script), trained on GPU machines by running its launch script, and read back as a row when
compare runs again."""

from __future__ import annotations

from harness.engines import ENGINES, Pending, Trained, TrainRow, load_tokenizer
from harness.prompts import render_prompt
from trainers.engines.verl.checkpoints import read_back
from trainers.engines.verl.config import LAUNCH, check_supported, prompt_tokens, write_row
from trainers.protocol import schedule

INSTRUCTIONS = ("wait for verl, which trains on GPUs. On a machine with CUDA GPUs and the verl environment "
                "(bash envs/verl.sh; . .venv-verl/bin/activate), run each launch script; then run this command "
                "again: it reads their checkpoints back, evaluates them and writes the leaderboard.")


class VerlEngine:
    name = "verl"
    packages: tuple[str, ...] = ()  # verl's versions are pinned in envs/verl.constraints.txt, another environment

    def check(self, variant: str, config) -> None:
        check_supported(variant, config)

    def train(self, row: TrainRow) -> Trained | Pending:
        """The row's final model read back from its finished verl run; otherwise its verl launch files, written
        once."""
        row_dir = row.train_dir.parent
        final = read_back(row_dir / "verl", row.train_dir, row.config, row.budget)
        if final is not None:
            return Trained(final)
        launch = row_dir / "verl" / LAUNCH
        if not launch.is_file():
            write_launch_files(row)
        return Pending((launch,), INSTRUCTIONS)


def write_launch_files(row: TrainRow) -> None:
    """The row's prompts in the built-in trainer's seeded order, for as many steps as the budget pays for, and
    verl's data, spec, overrides and launch script."""
    problems, config, row_dir = row.train_data.problems, row.config, row.train_dir.parent
    max_new_tokens = config.max_new_tokens or row.train_task.max_new_tokens
    steps = schedule.most_steps_paid(schedule.first_round_cost(config, max_new_tokens), row.budget)
    order = schedule.prompt_order(config, steps, len(problems), row.seed)
    # The user's message unrendered: verl applies the model's chat template itself (when it has one).
    prompts = [render_prompt(row.template, problems[i].problem, None) for i in order]
    tokenizer = load_tokenizer(row.model.path)
    longest = max(prompt_tokens(tokenizer, p) for p in prompts[: len(problems)])
    write_row(row_dir, row.variant, config, model_path=str(row.model.path), prompts=prompts,
              golds=[problems[i].golds for i in order], answer_format=row.train_task.answer_format,
              grader=row.train_task.grader, budget=row.budget, seed=row.seed, max_new_tokens=max_new_tokens,
              max_prompt_tokens=longest + 16)


ENGINES.register("verl", VerlEngine())
