"""Any OpenAI-compatible server (`vllm serve`, OpenAI, ...) as a generation backend, via the `openai` client.

The model runs elsewhere, so this backend only shapes requests: the n samples of one problem (consecutive
identical prompts in a batch) become one request with the API's `n`, which lets the server prefill the prompt
once; up to `concurrency` requests are in flight at once, and results come back in input order. The client
library does the retries (exponential backoff on connection errors, timeouts, 408/409/429/5xx) and the
timeouts; a failure left after them becomes one line that names the fix.
"""

from __future__ import annotations

import asyncio
import json
import os

from harness.backends.base import BACKENDS, Generation, SamplingParams, cut_at_stop, group_consecutive

# Local servers need no key, but the client refuses to start without one.
PLACEHOLDER_KEY = "EMPTY"


@BACKENDS.register("openai")
class OpenAIBackend:
    def __init__(self, base_url: str, api_model: str, endpoint: str = "completions",
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8, max_retries: int = 3,
                 timeout: float = 600.0, send_seed: bool = True):
        try:
            import openai
        except ImportError:
            raise ImportError("the openai backend needs the openai client: pip install "
                              "'rlvr-harness[openai]'") from None
        if endpoint not in ("completions", "chat"):
            raise ValueError(f"--api-endpoint {endpoint!r} is not completions or chat")
        if concurrency < 1 or max_retries < 0 or not timeout > 0:
            raise ValueError(f"concurrency must be >= 1, max_retries >= 0 and timeout > 0; got "
                             f"{concurrency}, {max_retries} and {timeout}")
        self._openai = openai
        self.base_url = base_url.rstrip("/")
        self.api_model = api_model
        self.endpoint = endpoint
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        # OpenAI takes the seed as best effort, and some servers refuse it (older vLLM CPU builds crashed on a
        # per-request seed), so sending it is optional.
        self.send_seed = send_seed

    def describe(self) -> dict:
        # Never the key: the card is written to disk and shared. Only the variable's name is recorded.
        return {"backend": "openai", "base_url": self.base_url, "api_model": self.api_model,
                "endpoint": self.endpoint, "api_key_env": self.api_key_env,
                "openai": self._openai.__version__, "concurrency": self.concurrency,
                "max_retries": self.max_retries, "timeout_s": self.timeout, "send_seed": self.send_seed}

    def generate(self, prompts: list[str], params: SamplingParams, seed: int) -> list[Generation]:
        # asyncio rather than threads: on an error or Ctrl-C the requests in flight are cancelled instead
        # of holding the process until their timeout.
        results = asyncio.run(self._generate_groups(group_consecutive(prompts), params, seed))
        return [generation for group in results for generation in group]

    async def _generate_groups(self, groups: list[tuple[str, int]], params: SamplingParams,
                               seed: int) -> list[list[Generation]]:
        # A client per call: an async client's connections belong to the event loop that opened them.
        key = os.environ.get(self.api_key_env) or PLACEHOLDER_KEY
        async with self._openai.AsyncOpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout,
                                            max_retries=self.max_retries) as client:
            in_flight = asyncio.Semaphore(self.concurrency)

            async def one(index: int, prompt: str, n: int) -> list[Generation]:
                async with in_flight:
                    try:
                        # seed + request index: a seed per problem, the same ones when the batch is rerun
                        return await self._request(client, prompt, n, params, seed + index)
                    except self._openai.OpenAIError as e:
                        raise await self._explain(client, e) from None
                    except json.JSONDecodeError as e:
                        raise RuntimeError(f"the server at {self.base_url} sent a body that is not JSON "
                                           f"({e.msg} at character {e.pos}); check its log") from None

            tasks = [asyncio.ensure_future(one(i, prompt, n)) for i, (prompt, n) in enumerate(groups)]
            try:
                return await asyncio.gather(*tasks)
            finally:  # the first failure ends the batch: the other requests are cancelled, not left running
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _request(self, client, prompt: str, n: int, params: SamplingParams,
                       seed: int) -> list[Generation]:
        sampling = dict(model=self.api_model, n=n, temperature=params.temperature, top_p=params.top_p,
                        max_tokens=params.max_new_tokens, stop=list(params.stop) or None,
                        **({"seed": seed} if self.send_seed else {}))
        if self.endpoint == "chat":
            response = await client.chat.completions.create(
                messages=[{"role": "user", "content": prompt}], **sampling)
        else:
            response = await client.completions.create(prompt=prompt, **sampling)
        # The client checks no schema by default, so a body without the promised choices is caught here.
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or len(choices) != n:
            got = f"{len(choices)} choices" if isinstance(choices, list) else f"{response!r:.80}"
            raise RuntimeError(f"the server at {self.base_url} sent a malformed answer to /{self.endpoint} "
                               f"(asked for {n} choices, got {got}); check its log")
        choices = sorted(choices, key=lambda c: getattr(c, "index", 0) or 0)
        # chat content is None for a refusal or a tool call: no text, graded as no answer
        texts = [(getattr(getattr(c, "message", None), "content", None) if self.endpoint == "chat"
                  else getattr(c, "text", None)) or "" for c in choices]
        finishes = [getattr(c, "finish_reason", None) for c in choices]
        total = getattr(getattr(response, "usage", None), "completion_tokens", None)
        generations = []
        for text, finish, tokens in zip(texts, finishes, split_tokens(total, texts, finishes, params),
                                        strict=True):
            cut, hit_stop = cut_at_stop(text, params.stop)
            # a server that ignored a stop string ran on past it: the stop the cut found is the real ending
            truncated = finish == "length" and not hit_stop
            generations.append(Generation(text=cut, num_tokens=tokens,
                                          finish_reason="length" if truncated else "stop"))
        return generations

    async def _explain(self, client, e: Exception) -> Exception:
        """The client's error, after its retries, as one line that says what to do."""
        openai, where = self._openai, f"the server at {self.base_url}"
        tries = f"after {self.max_retries} retries"
        if isinstance(e, openai.APITimeoutError):
            return RuntimeError(f"{where} did not answer within {self.timeout:g} s ({tries}); it is "
                                "overloaded or answers at length: lower --concurrency or --max-new-tokens")
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e.__context__
            detail = f"{type(cause).__name__}: {one_line(str(cause))}" if cause else one_line(str(e))
            if type(cause).__name__ == "ConnectError":  # httpx and httpx2 alike
                return RuntimeError(f"{where} refused the connection {tries} ({detail}); start it, or fix "
                                    "--base-url")
            return RuntimeError(f"{where} broke off its answer {tries} ({detail}); check its log")
        if isinstance(e, openai.APIStatusError):
            status, message = e.status_code, server_message(e.body)
            if status in (401, 403):
                return ValueError(f"{where} refused the API key (HTTP {status}: {message}); put a valid "
                                  f"key in ${self.api_key_env}, or name the one that holds it: --api-key-env")
            if status in (400, 404, 422):
                served = await served_models(client)
                if served is not None and self.api_model not in served:
                    return ValueError(f"--api-model {self.api_model} is not served at {self.base_url}; it "
                                      f"serves: {', '.join(served) or 'nothing'}")
                if status == 404:
                    return ValueError(f"{where} has no /{self.endpoint} for {self.api_model} (HTTP 404: "
                                      f"{message}); check --base-url (it usually ends in /v1) and "
                                      "--api-endpoint")
                return ValueError(f"{where} rejected the request to /{self.endpoint} (HTTP {status}: "
                                  f"{message}); check the sampling settings against what the server accepts")
            if status == 429:
                return RuntimeError(f"{where} kept rate-limiting {tries} ({message}); lower --concurrency")
            retried = f" {tries}" if status >= 500 else ""
            return RuntimeError(f"{where} answered HTTP {status}{retried} ({message}); check its log")
        return RuntimeError(f"{where} sent an answer the openai client could not read ({type(e).__name__}: "
                            f"{one_line(str(e))}); check its log")


def split_tokens(total: int | None, texts: list[str], finishes: list, params: SamplingParams) -> list:
    """Completion tokens per choice. The API reports only the request's total (exact when n is 1). With n > 1,
    a choice that hit the limit has max_new_tokens and the others share the rest in proportion to their text
    length: sums and means stay exact, single counts are estimates. None when the server reports no usage."""
    if total is None:
        return [None] * len(texts)
    counts = [params.max_new_tokens if f == "length" else None for f in finishes]
    others = [i for i, count in enumerate(counts) if count is None]
    if not others:
        return counts
    rest = max(total - params.max_new_tokens * (len(texts) - len(others)), 0)
    weights = [len(texts[i]) + 1 for i in others]  # + 1: an empty completion still spent its end token
    shares = [rest * w / sum(weights) for w in weights]
    floors = [int(share) for share in shares]
    # the rounding remainder goes to the largest fractions, so the counts add up to the server's total
    for j in sorted(range(len(others)), key=lambda j: floors[j] - shares[j])[: rest - sum(floors)]:
        floors[j] += 1
    for i, count in zip(others, floors, strict=True):
        counts[i] = count
    return counts


async def served_models(client) -> list[str] | None:
    """The model names the server lists, or None when it cannot list them."""
    try:
        return sorted(model.id for model in (await client.models.list()).data)
    except Exception:  # noqa: BLE001  only a hint for the error message; its absence is no new error
        return None


def server_message(body: object) -> str:
    """The server's own words out of an error body (OpenAI, vLLM and FastAPI shapes)."""
    if isinstance(body, dict):
        body = body.get("message") or body.get("detail") or body
    return one_line(str(body)) if body else "no message"


def one_line(text: str, limit: int = 200) -> str:
    return " ".join(text.split())[:limit]
