"""The sandbox: a tiny Llama, a character tokenizer and a cached warm start, all built in code (the default
warm start's weights also ship with the code, so every machine starts from the same bytes).

The build and test machines have no GPU and no model hub, so every command's default model comes from here.
Everything loads through `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained`, so the sandbox exercises
the same code path as a real model.
"""

from harness.sandbox.model import SandboxModelConfig, build_model
from harness.sandbox.tokenizer import build_tokenizer

__all__ = ["SandboxModelConfig", "build_model", "build_tokenizer"]
