import pytest

from harness.backends.base import SamplingParams, cut_at_stop
from harness.backends.hf import HFBackend


@pytest.fixture(scope="module")
def backend(untrained_model_dir):
    return HFBackend(str(untrained_model_dir), device="cpu")


def test_cut_at_stop_takes_the_earliest_stop():
    assert cut_at_stop("a</s>b<|im_end|>c", ("<|im_end|>", "</s>")) == ("a", True)
    assert cut_at_stop("abc", ("</s>",)) == ("abc", False)


def test_sampling_params_refuse_bad_values():
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        SamplingParams(temperature=-0.5)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)


def test_hitting_max_new_tokens_is_reported_as_truncation(backend):
    params = SamplingParams(temperature=1.0, max_new_tokens=3, stop=())
    outputs = backend.generate(["12+34=?", "5-3=?"], params, seed=0)
    for out in outputs:
        assert out.num_tokens <= 3
        if out.num_tokens == 3:
            assert out.finish_reason == "length"


def test_seeded_sampling_repeats_and_greedy_ignores_the_seed(backend):
    prompts = ["12+34=?", "7*8=?", "100-1=?"]
    sampled = SamplingParams(temperature=1.0, max_new_tokens=12)
    assert backend.generate(prompts, sampled, seed=3) == backend.generate(prompts, sampled, seed=3)
    assert backend.generate(prompts, sampled, seed=3) != backend.generate(prompts, sampled, seed=4)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
    assert backend.generate(prompts, greedy, seed=1) == backend.generate(prompts, greedy, seed=2)


def test_left_padding_does_not_change_a_greedy_completion(backend):
    greedy = SamplingParams(temperature=0.0, max_new_tokens=10)
    alone = backend.generate(["12+34=?"], greedy, seed=0)[0]
    batched = backend.generate(["12+34=?", "1234*5678-91011=?"], greedy, seed=0)[0]
    assert alone.text == batched.text


def test_vllm_backend_without_vllm_says_how_to_get_it(untrained_model_dir):
    try:
        import vllm  # noqa: F401
    except ImportError:
        from harness.backends.vllm import VLLMBackend

        with pytest.raises(RuntimeError, match=r"rlvr-harness\[vllm\].*or use --backend hf"):
            VLLMBackend(str(untrained_model_dir))
    else:
        pytest.skip("vllm is installed; its generation path needs a GPU and is checked on GPU machines")
