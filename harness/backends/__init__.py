"""Generation backends. Importing this package registers the built-ins in `BACKENDS`."""

from harness.backends.base import BACKENDS, Backend, Generation, SamplingParams  # noqa: F401
from harness.backends.hf import HFBackend  # noqa: F401
from harness.backends.openai import OpenAIBackend  # noqa: F401
from harness.backends.vllm import VLLMBackend  # noqa: F401
