"""The verl engine (experimental until `envs/verl-launch.sh` has run on a GPU; see the README).

verl (Ray + FSDP/Megatron + vLLM) trains; the harness prepares and reads back:
- `plugin`: registers every registry-shaped variant's advantage and loss into verl's own registries
  (`harness_<variant>`), loaded in every verl process through the `verl.plugins` entry point;
- `reward`: verl's custom reward function, the task's extraction and grader;
- `config`: from a compare row's settings, verl's data files (parquet), the variant spec the plugin reads, the
  Hydra overrides and a launch script;
- `checkpoints`: brings a finished verl run back as a compare row (final model, ledger, train log).

verl lives in its own environment (`envs/verl.sh`, `.venv-verl`): its pins conflict with this project's.
"""


def verl_name(variant: str) -> str:
    """The name a harness variant has in verl's advantage and policy-loss registries."""
    return f"harness_{variant.replace('-', '_')}"
