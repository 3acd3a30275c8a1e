"""vLLM generation, the GPU path (optional extra `rlvr-harness[vllm]`; not installable on CPU machines)."""

from __future__ import annotations

from harness.backends.base import BACKENDS, Generation, SamplingParams, cut_at_stop


@BACKENDS.register("vllm")
class VLLMBackend:
    def __init__(self, model_path: str, dtype: str = "auto", gpu_memory_utilization: float = 0.85):
        try:
            import vllm
        except ImportError:
            raise RuntimeError("the vllm backend needs vllm: pip install 'rlvr-harness[vllm]' on a machine with a "
                               "GPU, or use --backend hf") from None
        self._vllm = vllm
        self.model_path = str(model_path)
        self.dtype = dtype
        self.llm = vllm.LLM(model=self.model_path, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization)

    def describe(self) -> dict:
        return {"backend": "vllm", "vllm": self._vllm.__version__, "dtype": self.dtype}

    def generate(self, prompts: list[str], params: SamplingParams, seed: int) -> list[Generation]:
        # One seed per prompt: a shared seed would make the n samples of one problem identical.
        per_prompt = [
            self._vllm.SamplingParams(temperature=params.temperature, top_p=params.top_p,
                                      max_tokens=params.max_new_tokens, stop=list(params.stop), seed=seed + i)
            for i in range(len(prompts))
        ]
        results = []
        for request in self.llm.generate(prompts, per_prompt, use_tqdm=False):
            out = request.outputs[0]
            text, _ = cut_at_stop(out.text, params.stop)
            finish = "length" if out.finish_reason == "length" else "stop"
            results.append(Generation(text=text, num_tokens=len(out.token_ids), finish_reason=finish))
        return results
