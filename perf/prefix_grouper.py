"""Training forward + backward, standard against Prefix Grouper, for long prompts and short responses.

The standard forward (`trainers.builtin.rollout.token_logprobs`) encodes each group's prompt G times; the grouped one
(`trainers.builtin.prefix_grouper.prefix_grouped_logprobs`) encodes it once and runs the G responses against its
KV cache. The model is the sandbox architecture with random weights and a longer position table; prompts
are random tokens, left-padded by up to a tenth of their length, responses random tokens of 16-32. The figures
are the median of a few timed repeats (the two forwards alternated, so that a busy machine slows both alike)
after one warm-up, and the largest log-prob difference between the two forwards as a sanity check.

    python perf/prefix_grouper.py [--prompt-lengths 512,1024] [--prompts 2] [--group-size 8] [--repeats 3]
                                  [--threads 2]
"""

from __future__ import annotations

from harness.machine import pin_cpu_kernels

pin_cpu_kernels()  # before torch loads: the kernels `harness` commands use (harness/machine.py)

import argparse
import statistics
import time

import torch

from harness.sandbox.model import SandboxModelConfig, build_model
from trainers.builtin.prefix_grouper import prefix_grouped_logprobs
from trainers.builtin.rollout import RolloutBatch, left_pad, token_logprobs

RESPONSE_LENGTHS = (16, 32)


def make_batch(vocab: int, prompts: int, group_size: int, prompt_length: int, seed: int) -> RolloutBatch:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(prompts):
        length = prompt_length - int(torch.randint(0, prompt_length // 10 + 1, (), generator=generator))
        rows += [torch.randint(4, vocab, (length,), generator=generator).tolist()] * group_size
    prompt_ids, prompt_mask = left_pad(rows, pad_id=0)
    lengths = torch.randint(RESPONSE_LENGTHS[0], RESPONSE_LENGTHS[1] + 1, (len(rows),), generator=generator)
    width = int(lengths.max())
    response_mask = (torch.arange(width)[None] < lengths[:, None]).long()
    response_ids = torch.randint(4, vocab, (len(rows), width), generator=generator) * response_mask
    return RolloutBatch(prompt_ids, prompt_mask, response_ids, response_mask, torch.zeros(len(rows), width),
                        torch.zeros(len(rows), dtype=torch.bool))


def forward_backward(model, batch: RolloutBatch, forward) -> tuple[float, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    started = time.perf_counter()
    logp, _ = forward(model, batch, 1.0, with_entropy=True)
    (-(logp.sum() / batch.response_mask.sum())).backward()
    return time.perf_counter() - started, logp.detach()


def measure(model, batch: RolloutBatch, repeats: int) -> dict:
    forwards = {"standard": token_logprobs, "grouped": prefix_grouped_logprobs}
    for forward in forwards.values():
        forward_backward(model, batch, forward)  # warm-up: first-call costs are nobody's figure
    runs = {name: [] for name in forwards}
    for _ in range(repeats):
        for name, forward in forwards.items():
            runs[name].append(forward_backward(model, batch, forward))
    logps = [name_runs[-1][1] for name_runs in runs.values()]
    return {**{name: statistics.median(seconds for seconds, _ in name_runs) for name, name_runs in runs.items()},
            "max_logp_diff": float((logps[0] - logps[1]).abs().max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt-lengths", default="512,1024")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompt_lengths = [int(n) for n in args.prompt_lengths.split(",")]
    model = build_model(SandboxModelConfig(max_position_embeddings=max(prompt_lengths) + RESPONSE_LENGTHS[1]))
    model.train()
    vocab = model.config.vocab_size
    print(f"sandbox architecture (hidden {model.config.hidden_size}, {model.config.num_hidden_layers} layers), "
          f"float32, {torch.get_num_threads()} threads; {args.prompts} prompts x G={args.group_size}, responses "
          f"{RESPONSE_LENGTHS[0]}-{RESPONSE_LENGTHS[1]} tokens; forward + backward, median of {args.repeats}")
    print(f"{'prompt tok':>10} {'rows':>5} {'standard s':>11} {'grouped s':>10} {'speed-up':>9} {'max |dlogp|':>12}")
    for prompt_length in prompt_lengths:
        batch = make_batch(vocab, args.prompts, args.group_size, prompt_length, seed=prompt_length)
        r = measure(model, batch, args.repeats)
        print(f"{prompt_length:>10} {batch.response_ids.shape[0]:>5} {r['standard']:>11.3f} {r['grouped']:>10.3f} "
              f"{r['standard'] / r['grouped']:>8.2f}x {r['max_logp_diff']:>12.1e}")


if __name__ == "__main__":
    main()
