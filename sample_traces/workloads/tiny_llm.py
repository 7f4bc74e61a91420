"""A user's own offline vLLM script: tiny dummy-weight model, batches of token prompts.

It knows nothing of tracekit; ``tracekit capture -- python tiny_llm.py ...`` profiles it.

    python sample_traces/workloads/tiny_llm.py --tp 2 --requests 12 --max-tokens 16
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_model import write_model

# Facts for vLLM on a small CPU machine (see VLLM_CPU.md); a user's own values win.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--pp", type=int, default=1)
    parser.add_argument("--moe", action="store_true")
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="generate() calls")
    parser.add_argument("--eager", action="store_true", help="enforce_eager (not with --pp)")
    parser.add_argument("--kv-blocks", type=int, default=None, help="num_gpu_blocks_override")
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--max-num-seqs", type=int, default=None)
    parser.add_argument("--max-num-batched-tokens", type=int, default=None)
    parser.add_argument(
        "--vllm-metrics",
        action="store_true",
        help="keep vLLM's own stats on and print its counters (vllm:num_preemptions) at the end",
    )
    args = parser.parse_args()
    if args.tp * args.pp > 1:
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0|1")

    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    model = write_model(
        Path(tempfile.mkdtemp(prefix="tiny-model-")), "moe" if args.moe else "dense"
    )
    extra = {
        k: v
        for k, v in (
            ("num_gpu_blocks_override", args.kv_blocks),
            ("block_size", args.block_size),
            ("max_num_seqs", args.max_num_seqs),
            ("max_num_batched_tokens", args.max_num_batched_tokens),
            ("disable_log_stats", False if args.vllm_metrics else None),
        )
        if v is not None
    }
    llm = LLM(
        model=str(model),
        load_format="dummy",
        skip_tokenizer_init=True,
        tensor_parallel_size=args.tp,
        pipeline_parallel_size=args.pp,
        max_model_len=args.max_model_len,
        enforce_eager=args.eager,
        seed=0,
        **extra,
    )
    params = SamplingParams(max_tokens=args.max_tokens, ignore_eos=True, temperature=0.0)
    total = 0
    for round_index in range(args.rounds):
        prompts = [
            TokensPrompt(
                prompt_token_ids=[
                    (7 * i + 13 * j + round_index) % 2000 + 3 for j in range(args.prompt_len)
                ]
            )
            for i in range(args.requests)
        ]
        started = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
        seconds = time.perf_counter() - started
        print(f"round {round_index}: {tokens} tokens in {seconds:.4f} s", flush=True)
        total += tokens
    print(f"generated {total} tokens")
    if args.vllm_metrics:
        print_counters(llm)
    return 0


def print_counters(llm: Any) -> None:
    """vLLM's own Prometheus counters, one ``vllm-metric NAME VALUE`` line each (summed)."""
    from vllm.v1.metrics.reader import Counter

    totals: dict[str, int] = {}
    for metric in llm.get_metrics():
        if isinstance(metric, Counter):
            totals[metric.name] = totals.get(metric.name, 0) + int(metric.value)
    for name in ("vllm:num_preemptions", "vllm:prompt_tokens", "vllm:generation_tokens"):
        print(f"vllm-metric {name} {totals.get(name, 0)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
