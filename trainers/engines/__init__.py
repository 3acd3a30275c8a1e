"""Adapters that run the harness's variants on other engines: vLLM rollouts for the built-in trainer
(`vllm_rollout`), TRL's GRPOTrainer (`trl`) and verl (`verl`). Each calls the registered variant math
(`trainers.algos.variants`); none copies the trainer."""
