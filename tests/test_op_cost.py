"""FLOPs and bytes per op call from recorded shapes, and collective message sizes, by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analyzers.planning.op_cost import ATTENTION, ELEMENTWISE, GEMM, OpCost, op_cost
from analyzers.rank.message_size import collective_bytes
from analyzers.read.kineto import parse_trace
from tests.builders import annotation, runtime, shaped_op, write_trace
from tests.conftest import shared
from tracekit.core.trace_model import Kind, Signature

BF16, F32, I64 = "c10::BFloat16", "float", "long int"


def sig(op: str, dims: list[Any], types: list[str]) -> Signature:
    return Signature(op, tuple(tuple(d) for d in dims), tuple(types))


@pytest.mark.parametrize(
    ("op", "dims", "types", "expected"),
    [
        # 2·64·256·128 FLOPs; (64·128 + 128·256 + 64·256) · 2 bytes
        ("aten::mm", [[64, 128], [128, 256]], [BF16, BF16], OpCost(GEMM, 4_194_304, 114_688)),
        # ... plus the bias [256] read once
        (
            "aten::addmm",
            [[256], [64, 128], [128, 256], [], []],
            [BF16, BF16, BF16, "Scalar", "Scalar"],
            OpCost(GEMM, 4_194_304, 115_200),
        ),
        # 2·4·8·32·16; 4·(8·16 + 16·32 + 8·32) · 4
        ("aten::bmm", [[4, 8, 16], [4, 16, 32]], [F32, F32], OpCost(GEMM, 32_768, 14_336)),
        # batch 2·3 broadcast against one [16, 4] weight, read once: (768 + 64 + 6·8·4) · 4
        ("aten::matmul", [[2, 3, 8, 16], [16, 4]], [F32, F32], OpCost(GEMM, 6_144, 4_096)),
        # M = 2·10, N = 32, K = 64; (1280 + 2048 + 640 + 32) · 2
        (
            "aten::linear",
            [[2, 10, 64], [32, 64], [32]],
            [BF16, BF16, BF16],
            OpCost(GEMM, 81_920, 8_000),
        ),
        # vLLM CPU: out [M, N], a [M, K], no bias, the handler (a long int); weight N·K
        (
            "_C::onednn_mm",
            [[228, 256], [228, 128], [], []],
            [BF16, BF16, "", I64],
            OpCost(GEMM, 14_942_208, 240_640),
        ),
        # T = 4 tokens, k = 1 of E = 2 experts, H = 8, I = 3: 2·4·1·(6·8 + 8·3) FLOPs;
        # 2·(1 − ½⁴) = 1.875 experts touched of 144 weight bytes each, x, out, topk w + ids
        (
            "_C::cpu_fused_moe",
            [[4, 8], [4, 8], [2, 6, 8], [2, 8, 3], [], [], [4, 1], [4, 1], [], [], []],
            [BF16, BF16, BF16, BF16, "", "", F32, "int", "Scalar", "", ""],
            OpCost(GEMM, 576, 430),
        ),
        # B 1, H 4, Sq 16, Sk 32, D = Dv = 8 (GQA k/v with 2 heads): 2·4·16·32·16 FLOPs;
        # q, k, v, out 1024 bytes each
        (
            "aten::scaled_dot_product_attention",
            [[1, 4, 16, 8], [1, 2, 32, 8], [1, 2, 32, 8], [], []],
            [BF16, BF16, BF16, "", "Scalar"],
            OpCost(ATTENTION, 65_536, 4_096),
        ),
        (  # the same in flash-attention's [B, S, H, D] layout
            "aten::_flash_attention_forward",
            [[1, 16, 4, 8], [1, 32, 2, 8], [1, 32, 2, 8], [], []],
            [BF16, BF16, BF16, "", ""],
            OpCost(ATTENTION, 65_536, 4_096),
        ),
        # broadcast [4, 8] + [8]: 32 outputs; read 128 + 32, write 128
        ("aten::add", [[4, 8], [8], []], [F32, F32, "Scalar"], OpCost(ELEMENTWISE, 32, 288)),
        # in place: the first input is read and written
        ("aten::mul_", [[4, 8], [8]], [F32, F32], OpCost(ELEMENTWISE, 32, 288)),
        # a copy writes its destination (bf16) and reads its source (float): no FLOPs
        ("aten::copy_", [[4, 8], [4, 8], []], [BF16, F32, "Scalar"], OpCost(ELEMENTWISE, 0, 192)),
        ("aten::fill_", [[4, 8], []], ["int", "Scalar"], OpCost(ELEMENTWISE, 0, 128)),
        # a reduction reads its input once, a FLOP per element
        (
            "aten::mean",
            [[4, 8], [], [], []],
            [F32, "ScalarList", "Scalar", ""],
            OpCost(ELEMENTWISE, 32, 128),
        ),
    ],
)
def test_cost_per_op_kind(op: str, dims: list[Any], types: list[str], expected: OpCost) -> None:
    assert op_cost(sig(op, dims, types)) == expected


@pytest.mark.parametrize(
    ("op", "dims", "types"),
    [
        ("aten::view", [[4, 8], []], [F32, "ScalarList"]),  # a view moves no data
        ("aten::mm", [[4, 8], [4, 8]], [F32, F32]),  # inner dims differ
        ("aten::mm", [[4, 8]], [F32]),  # an operand missing
        ("aten::add", [[4, 8], [3]], [F32, F32]),  # not broadcastable
        ("aten::cat", [[[1, 2], [1, 2]], []], ["TensorList", "Scalar"]),  # element types unknown
        ("vllm::unified_attention_with_output", [[8, 2, 64]], [BF16]),  # context not in shapes
    ],
)
def test_ops_the_shapes_dont_determine_have_no_cost(
    op: str, dims: list[Any], types: list[str]
) -> None:
    assert op_cost(sig(op, dims, types)) is None


def _nccl_kernel(ts: float, dur: float, corr: int, **args: Any) -> dict[str, Any]:
    return {
        "ph": "X",
        "cat": "kernel",
        "name": "ncclKernel_AllReduce_RING_LL_Sum_float",
        "ts": ts,
        "dur": dur,
        "pid": 0,
        "tid": 7,
        "args": {"stream": 7, "device": 0, "correlation": corr, **args},
    }


def test_collective_bytes_own_linked_and_from_shapes(tmp_path: Path) -> None:
    events = [
        # old PyTorch: sizes only in the nccl:* annotation's shapes; the kernel links to it
        # through its launch (correlation 7) inside the annotation
        shaped_op("nccl:all_reduce", 0, 50, [[1000]], [F32], cat="user_annotation"),
        runtime("cudaLaunchKernel", 10, 5, corr=7),
        _nccl_kernel(20, 100, 7),
        # PyTorch ≥ 2.1: on the kernel itself; max(in, out) × dtype (all-gather: the output)
        _nccl_kernel(
            130, 10, 8, **{"In msg nelems": 10, "Out msg nelems": 20, "dtype": "BFloat16"}
        ),
        # a host call without sizes, around a record_param_comms op that has them
        annotation("c10d::allreduce_", 195, 60),
        shaped_op(
            "record_param_comms",
            200,
            50,
            [[]],
            ["TensorList"],
            **{"In msg nelems": 6, "Out msg nelems": 6, "dtype": "Float"},
        ),
        _nccl_kernel(300, 10, 99),  # launched outside the trace: unknown
    ]
    ev = parse_trace(write_trace(tmp_path / "t.json.gz", events)).events
    assert ev.msg_bytes.tolist() == [-1, -1, -1, 40, -1, 24, -1]
    rows = np.array([2, 3, 4, 5, 6])
    assert collective_bytes(ev, rows).tolist() == [4000, 40, 24, 24, -1]


def test_collective_bytes_on_real_nccl_traces() -> None:
    # PyTorch ≥ 2.1 trace: In/Out msg nelems + dtype on each NCCL kernel (float: 4 bytes)
    ev = parse_trace(shared("hta_nccl_relative_ts/rank-0.json.gz")).events
    kernels = np.flatnonzero((ev.kind == Kind.KERNEL) & (ev.msg_bytes >= 0))
    sizes = collective_bytes(ev, kernels)
    assert len(kernels) == 21 and (sizes == ev.msg_bytes[kernels]).all()
    assert sorted(set(sizes.tolist())) == [
        424,  # broadcast of 53 longs
        212_480,  # broadcast of 53,120 floats
        8_196_000,  # all-reduce of 2,049,000 floats
        9_724_160,
        26_255_360,
        26_550_272,
        31_502_336,
    ]
    # older trace: no nelems; the nccl:* annotations' shapes, linked through the launch
    parsed = parse_trace(shared("hta_2rank/rank-0.json.gz"))
    ev, names = parsed.events, parsed.names
    nccl_ids = [i for i, n in enumerate(names) if n.startswith("ncclKernel")]
    nccl = np.flatnonzero((ev.kind == Kind.KERNEL) & np.isin(ev.name_id, nccl_ids))
    assert sorted(collective_bytes(ev, nccl).tolist()) == [
        3_072,
        11_386_880,
        22_866_616,
        78_473_228,  # nccl:all_reduce of 19,618,307 floats
        105_033_720,
        107_822_144,
        419_430_400,  # all-to-all: c10d::alltoall_base_ / nccl:all_to_all, 419,430,400 bytes
        419_430_400,
        # all-gather: c10d::_allgather_base_'s gathered output (64 × nccl's 16 MiB shard)
        1_073_741_824,
        1_073_741_824,
    ]


def test_collective_bytes_from_the_collective_ops_shapes_only(tmp_path: Path) -> None:
    i8 = "signed char"
    events = [
        # an unrelated op around the call holds a bigger tensor: not the message
        shaped_op("All2All_Pooled_Req", 0, 100, [[1000, 1000]], [F32]),
        # all-gather of a 16-byte shard over 4 ranks: c10d's output, 64 bytes, is the size
        shaped_op("c10d::_allgather_base_", 1, 90, [[64], [16], []], [i8, i8, ""]),
        shaped_op("nccl:_all_gather_base", 2, 80, [[16]], [i8], cat="user_annotation"),
        runtime("cudaLaunchKernel", 3, 5, corr=11),
        _nccl_kernel(200, 10, 11),
    ]
    ev = parse_trace(write_trace(tmp_path / "t.json.gz", events)).events
    assert collective_bytes(ev, np.array([4])).tolist() == [64]
