"""Built-in task definitions. Importing this package registers them in `harness.task.TASKS`."""

from tasks import benchmarks, mqr, synthetic  # noqa: F401  (registration side effect)
