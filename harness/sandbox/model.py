"""The sandbox policy: a tiny Llama-style causal LM built from a config in code, with a seeded init.

It is a real `LlamaForCausalLM`, so generation, saving and `AutoModelForCausalLM.from_pretrained` go through
the same transformers code as any hub model; only the size is toy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from harness.sandbox.tokenizer import build_tokenizer


@dataclass(frozen=True)
class SandboxModelConfig:
    """Shape of the tiny Llama. The defaults are the warm start's model (about 1M parameters)."""

    # Width of the residual stream. 128 is the smallest width at which the warm start learns carries
    # within its few-minute budget; 192+ learns more per step but each step costs ~2x on 2 CPU cores.
    hidden_size: int = 128
    # Width of the SwiGLU MLP (Llama uses ~2.7x hidden).
    intermediate_size: int = 352
    # Depth: column arithmetic needs a few hops (find the digits, add, carry, assemble the answer).
    num_layers: int = 4
    num_heads: int = 4
    # The longest sequence the warm start trains on is ~330 characters: prompt-aug's longest template around
    # a problem (212) and a worked solution with a self-check line (119). 384 covers it, so RoPE is never
    # asked for positions far past the ones trained on.
    max_position_embeddings: int = 384
    rope_theta: float = 10000.0
    # Std of the normal weight init (transformers' `initializer_range`).
    init_std: float = 0.02
    # Share the input embedding with the output head.
    tie_embeddings: bool = True
    # Seed of the weight init, so the same config always starts from the same weights.
    seed: int = 0


def build_model(config: SandboxModelConfig = SandboxModelConfig()) -> LlamaForCausalLM:
    """A freshly initialised tiny Llama whose special-token ids match `build_tokenizer()`."""
    tokenizer = build_tokenizer()
    llama_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        rope_theta=config.rope_theta,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=config.init_std,
        tie_word_embeddings=config.tie_embeddings,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(config.seed)
    try:
        model = LlamaForCausalLM(llama_config)
    finally:
        torch.random.set_rng_state(generator_state)  # seeding the init must not reseed the caller's stream
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def parameter_count(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
