"""Methods the harness adds to vLLM's workers (vLLM's `worker_extension_cls`), called through `collective_rpc`.

They run inside the engine's worker processes, where the model lives; the harness's own process has no handle
on its parameters. Kept free of harness imports so a worker can load it cheaply.
"""

from __future__ import annotations


class HarnessWorkerExtension:
    def harness_load_weights(self, path: str) -> None:
        """Replace the model's weights in place with those in a safetensors file (a training step's policy).
        `reload_weights` goes through the model's own loader, which also repacks weights the way the CPU
        backend's kernels want them (writing into the parameters directly would not)."""
        from vllm.model_executor.model_loader.weight_utils import safetensors_weights_iterator

        self.reload_weights(weights_iterator=safetensors_weights_iterator([path], use_tqdm_on_load=False))
