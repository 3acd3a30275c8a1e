"""transformers generation: batched, left-padded, KV-cached; the CPU default and the sandbox's path."""

from __future__ import annotations

import torch

from harness.backends.base import BACKENDS, Generation, SamplingParams, cut_at_stop


def pick_device(device: str) -> str:
    """'auto' is cuda where there is one; an explicit device this machine lacks is refused in one line."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device)
    return device


def check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this machine has no CUDA device (torch {torch.__version__}); use "
                         "--device cpu (or auto)")
    if device not in ("auto", "cpu") and not device.startswith(("cuda", "mps", "xpu")):
        raise ValueError(f"--device {device!r} is not a torch device; use auto, cpu or cuda")


@BACKENDS.register("hf")
class HFBackend:
    def __init__(self, model_path: str, device: str = "auto", dtype: str = "auto"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = str(model_path)
        self.device = pick_device(device)
        # bf16 halves memory and is what GPU serving uses; on CPU it is slower and less exact, so fp32.
        self.dtype = {"auto": torch.bfloat16 if self.device == "cuda" else torch.float32,
                      "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=self.dtype).to(self.device)
        except Exception as e:  # garbage weights, a broken config, a missing tokenizer: one line, not a traceback
            raise ValueError(f"{self.model_path} cannot be loaded as a transformers model ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else 'no message'}); point --model at a saved "
                             "model directory or an alias (`harness list models`)") from None
        self.tokenizer.padding_side = "left"  # generation appends on the right, so pad on the left
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.eval()

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def describe(self) -> dict:
        return {"backend": "hf", "device": self.device, "dtype": str(self.dtype).removeprefix("torch.")}

    @torch.no_grad()
    def generate(self, prompts: list[str], params: SamplingParams, seed: int) -> list[Generation]:
        torch.manual_seed(seed)
        # A chat template already wrote the special tokens into the text; adding them again would double BOS.
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True,
                                 add_special_tokens=not self.has_chat_template).to(self.device)
        sampling = params.temperature > 0
        output = self.model.generate(
            **encoded,
            do_sample=sampling,
            temperature=params.temperature if sampling else None,
            top_p=params.top_p if sampling else None,
            top_k=0 if sampling else None,  # the library default of 50 would silently change the distribution
            max_new_tokens=params.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            stop_strings=list(params.stop) or None,
            tokenizer=self.tokenizer,
        )
        new_tokens = output[:, encoded["input_ids"].shape[1]:].tolist()
        return [self._finish(ids, params) for ids in new_tokens]

    def _finish(self, ids: list[int], params: SamplingParams) -> Generation:
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        hit_eos = eos in ids
        if hit_eos:
            ids = ids[: ids.index(eos) + 1]
        elif pad is not None and pad != eos:
            while ids and ids[-1] == pad:  # sequences that stopped early on a stop string are right-padded
                ids = ids[:-1]
        text, hit_stop = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), params.stop)
        truncated = not (hit_eos or hit_stop) and len(ids) >= params.max_new_tokens
        return Generation(text=text, num_tokens=len(ids), finish_reason="length" if truncated else "stop")
