"""Rollouts from a vLLM engine that holds the policy's current weights (`rollout_engine = "vllm"`).

The trainer keeps the policy; the engine gets a copy of its weights before each rollout after an optimizer step
(written as safetensors to shared memory, read in place by the engine's worker), generates the group's
responses with one seed per request, and returns the tokens with their log-probs under the distribution they
were drawn from. Those log-probs are the sampler's, not the trainer's: other kernels, another precision, so
the update measures the gap and corrects for it (truncated importance sampling, `GRPOConfig.tis_cap`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch

from harness.backends.base import SamplingParams
from trainers.builtin.rollout import RolloutBatch, left_pad

# The share of GPU memory the rollout engine takes (ours); the rest is the trainer's.
GPU_MEMORY_SHARE = 0.3


def _scratch_dir() -> Path:
    """RAM-backed where there is one: a weight push writes the whole model each step."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="harness-policy-", dir=shm if shm.is_dir() else None))


class VLLMRollouts:
    def __init__(self, model, tokenizer, dtype: str = "float32"):
        from harness.backends.vllm import VLLMBackend

        self.model, self.tokenizer = model, tokenizer
        self.policy_dir = _scratch_dir()
        model.save_pretrained(self.policy_dir, safe_serialization=True)
        tokenizer.save_pretrained(self.policy_dir)
        # On a GPU the engine shares the device with the trainer's model, gradients and optimizer state.
        self.engine = VLLMBackend(str(self.policy_dir), dtype=dtype, gpu_memory_utilization=GPU_MEMORY_SHARE)
        self.pushed_version: int | None = 0
        self.pushes, self.push_seconds = 0, 0.0  # weight pushes so far and their time (the train log shows both)

    def push(self, version: int) -> None:
        """Give the engine the policy's weights as of optimizer step `version`, unless it has them already."""
        if version == self.pushed_version:
            return
        started = time.perf_counter()
        self.model.save_pretrained(self.policy_dir, safe_serialization=True)
        self.engine.load_weights(self.policy_dir / "model.safetensors")
        self.pushed_version = version
        self.pushes += 1
        self.push_seconds += time.perf_counter() - started

    def generate(self, prompt_ids: list[list[int]], *, max_new_tokens: int, temperature: float, eos_id: int,
                 pad_id: int, seed: int) -> RolloutBatch:
        """One response per prompt (a group repeats its prompt G times), as the built-in `sample` returns them:
        responses end at an end token (kept) or at max_new_tokens (truncated); no stop strings. vLLM also ends
        at every end token the model's generation_config.json lists, the built-in sampler at the tokenizer's
        EOS only: the same for SmolLM2 and the sandbox, not for models that list several."""
        if temperature <= 0:
            raise ValueError("training rollouts need temperature > 0: the policy's log-probs are those of a sampler")
        params = SamplingParams(temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens, stop=())
        outputs = self.engine.sample(prompt_ids, [1] * len(prompt_ids), params, seed, logprobs=True,
                                     stop_strings=False)
        device = next(self.model.parameters()).device  # where the trainer scores the batch, as `sample` does
        return rollout_batch(prompt_ids, [request.outputs[0] for request in outputs], pad_id, device)

    def close(self) -> None:
        """Stop the engine and delete the policy's copy in shared memory (a whole model in RAM otherwise)."""
        try:
            self.engine.close()
        finally:
            shutil.rmtree(self.policy_dir, ignore_errors=True)


def rollout_batch(prompt_ids: list[list[int]], responses: list, pad_id: int, device="cpu") -> RolloutBatch:
    """A RolloutBatch from vLLM's completions of `prompt_ids` (one each, asked with logprobs=0): the response
    tokens right-padded, and the sampler's log-prob of each as old_logp."""
    prompts, prompt_mask = left_pad(prompt_ids, pad_id)
    width = max(1, max(len(r.token_ids) for r in responses))
    response_ids = torch.full((len(responses), width), pad_id, dtype=torch.long)
    response_mask = torch.zeros((len(responses), width), dtype=torch.long)
    old_logp = torch.zeros((len(responses), width))
    for row, response in enumerate(responses):
        ids = list(response.token_ids)
        response_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        response_mask[row, : len(ids)] = 1
        old_logp[row, : len(ids)] = torch.tensor([step[token].logprob for step, token
                                                  in zip(response.logprobs, ids, strict=True)])
    truncated = torch.tensor([r.finish_reason == "length" for r in responses])
    return RolloutBatch(*(t.to(device) for t in (prompts, prompt_mask, response_ids, response_mask, old_logp,
                                                 truncated)))
