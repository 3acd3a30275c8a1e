"""Adapters that train the harness's variants on other engines: TRL's GRPOTrainer (`trl`) and verl (`verl`). Each
calls the registered variant math (`trainers.algos`) and the shared protocol (`trainers.protocol`); none imports
or copies the built-in trainer."""
