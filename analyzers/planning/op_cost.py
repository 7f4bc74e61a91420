"""FLOPs and bytes of one op call from its recorded input shapes.

Kineto's ``record_shapes=True`` gives each op call its inputs' dims and types (the parser keeps
them as ``Events.shape_id`` into the rank's ``ShapeTable``). From those, per op kind:

* **gemm** (``aten::mm``, ``addmm``, ``bmm``, ``baddbmm``, ``matmul``, ``linear``, vLLM's
  ``rocm_unquantized_gemm`` and CPU ``onednn_mm``): FLOPs = 2 · batch · M · N · K; bytes =
  both operands, the bias if any, and the M × N result, at the operands' dtype; vLLM CPU's
  ``cpu_fused_moe`` as its experts' GEMMs (see ``_fused_moe``);
* **attention** (``scaled_dot_product_attention`` and its flash / efficient / cuDNN / CPU
  variants, ``_flash_attention_forward``, ``_efficient_attention_forward``): FLOPs =
  2 · B · H · Sq · Sk · (D + Dv), the full score matrix (the dims don't say whether a mask
  is causal, so a causal prompt's FLOPs are overcounted up to 2×); bytes = q, k, v and the
  output, each read or written once (a fused kernel's traffic);
* **elementwise** (arithmetic, activations, norms' pieces, softmax, copies, fills): bytes =
  the tensor inputs plus the output (broadcast shape; for an in-place op its first input,
  which is read and written; copies and fills write their first input without reading it);
  FLOPs = output elements (0 for copies and fills). Reductions (``sum``, ``mean``) count
  their input read and one FLOP per input element; their small output is left out.

Anything else (views, allocation, ops whose inputs don't determine their work) has no cost:
``op_cost`` returns None, and the roofline leaves that time to the step model or the name rules.

Collective message sizes are in ``analyzers.rank.message_size``.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from tracekit.core.analysis import OpKind
from tracekit.core.dtypes import element_bytes
from tracekit.core.trace_model import NO_VALUE, Dims, Events, Kind, Signature

I64 = npt.NDArray[np.int64]
GEMM: Final = "gemm"
ATTENTION: Final = "attention"
ELEMENTWISE: Final = "elementwise"
OP_KINDS: Final[tuple[OpKind, ...]] = (GEMM, ATTENTION, ELEMENTWISE)
SHAPES_SOURCE: Final = "trace shapes"


class OpCost(NamedTuple):
    kind: str  # one of OP_KINDS
    flops: float
    bytes: float


class _Tensor(NamedTuple):
    dims: tuple[int, ...]
    size: int  # bytes per element

    @property
    def numel(self) -> int:
        return math.prod(self.dims)

    @property
    def nbytes(self) -> int:
        return self.numel * self.size


def tensors(sig: Signature) -> list[_Tensor]:
    """The signature's tensor inputs in order (scalars, None and tensor lists left out)."""
    out = []
    for dims, kind in zip(sig.dims, sig.types, strict=False):
        size = element_bytes(kind)
        if size is not None and all(type(d) is int for d in dims):
            out.append(_Tensor(_flat(dims), size))
    return out


def _flat(dims: Dims) -> tuple[int, ...]:
    return tuple(d for d in dims if isinstance(d, int))


# --- GEMMs ------------------------------------------------------------------------------------


def _gemm(batch: int, m: int, n: int, k: int, read: int, size: int) -> OpCost | None:
    """``read``: the operands' bytes as recorded (a broadcast weight counts once)."""
    if min(batch, m, n, k) <= 0:
        return None
    return OpCost(GEMM, 2.0 * batch * m * n * k, float(read + batch * m * n * size))


def _mm(t: list[_Tensor], first: int = 0) -> OpCost | None:
    """[M, K] @ [K, N] (``first``: where the operands start, after a bias)."""
    if len(t) < first + 2:
        return None
    a, b = t[first], t[first + 1]
    if len(a.dims) != 2 or len(b.dims) != 2 or a.dims[1] != b.dims[0]:
        return None
    read = sum(x.nbytes for x in t[: first + 2])
    return _gemm(1, a.dims[0], b.dims[1], a.dims[1], read, a.size)


def _bmm(t: list[_Tensor], first: int = 0) -> OpCost | None:
    """[B, M, K] @ [B, K, N] (after ``first`` leading inputs, e.g. baddbmm's ``input``)."""
    if len(t) < first + 2:
        return None
    a, b = t[first], t[first + 1]
    if len(a.dims) != 3 or len(b.dims) != 3 or a.dims[2] != b.dims[1] or a.dims[0] != b.dims[0]:
        return None
    read = sum(x.nbytes for x in t[: first + 2])
    return _gemm(a.dims[0], a.dims[1], b.dims[2], a.dims[2], read, a.size)


def _matmul(t: list[_Tensor]) -> OpCost | None:
    """torch.matmul: 1-D operands promoted, leading dims broadcast into a batch."""
    if len(t) < 2 or not t[0].dims or not t[1].dims:
        return None
    a = t[0].dims if len(t[0].dims) > 1 else (1, *t[0].dims)
    b = t[1].dims if len(t[1].dims) > 1 else (*t[1].dims, 1)
    if a[-1] != b[-2]:
        return None
    try:
        batch = math.prod(np.broadcast_shapes(a[:-2], b[:-2]))
    except ValueError:
        return None
    return _gemm(batch, a[-2], b[-1], a[-1], t[0].nbytes + t[1].nbytes, t[0].size)


def _linear(t: list[_Tensor]) -> OpCost | None:
    """x[..., K] · W[N, K]ᵀ (+ bias[N])."""
    if len(t) < 2 or not t[0].dims or len(t[1].dims) != 2 or t[0].dims[-1] != t[1].dims[1]:
        return None
    x, w = t[0], t[1]
    bias = sum(b.nbytes for b in t[2:3] if b.dims == (w.dims[0],))
    m = math.prod(x.dims[:-1])
    return _gemm(1, m, w.dims[0], x.dims[-1], x.nbytes + w.nbytes + bias, x.size)


def _onednn_mm(t: list[_Tensor]) -> OpCost | None:
    """vLLM CPU's ``_C::onednn_mm(out[M, N], a[M, K], bias?, handler)``: the [N, K] weight
    lives in the oneDNN handler, so its bytes come from N and K."""
    if len(t) < 2 or len(t[0].dims) != 2 or len(t[1].dims) != 2 or t[0].dims[0] != t[1].dims[0]:
        return None
    (m, n), (a, k) = t[0].dims, (t[1], t[1].dims[1])
    bias = sum(x.nbytes for x in t[2:] if x.dims == (n,))
    return _gemm(1, m, n, k, a.nbytes + n * k * a.size + bias, a.size)


def _fused_moe(t: list[_Tensor]) -> OpCost | None:
    """vLLM CPU's ``_C::cpu_fused_moe(out[T, H], x[T, H], w13[E, 2I, H], w2[E, H, I], ...,
    topk_weights[T, k], topk_ids[T, k], ...)``: FLOPs 2 · T · k · (2I·H + H·I); bytes the
    activations and the experts the T · k routings touch, E · (1 − (1 − k/E)^T) of them under
    uniform routing (the ids' values are not recorded: per-expert loads are not known)."""
    if len(t) < 6 or len(t[2].dims) != 3 or len(t[3].dims) != 3 or len(t[1].dims) != 2:
        return None
    out, x, w13, w2 = t[:4]
    tokens = x.dims[0]
    topk = [y for y in t[4:] if len(y.dims) == 2 and y.dims[0] == tokens]
    experts = w13.dims[0]
    if len(topk) < 2 or w2.dims[0] != experts or not 0 < topk[0].dims[1] <= experts:
        return None
    k = topk[0].dims[1]
    per_token = w13.dims[1] * w13.dims[2] + w2.dims[1] * w2.dims[2]
    touched = experts * (1 - (1 - k / experts) ** tokens)
    weights = touched * (w13.nbytes + w2.nbytes) / experts
    size = x.nbytes + out.nbytes + weights + sum(y.nbytes for y in topk[:2])
    return OpCost(GEMM, 2.0 * tokens * k * per_token, float(size))


# --- attention --------------------------------------------------------------------------------


def _attention(t: list[_Tensor], heads_first: bool) -> OpCost | None:
    """q, k, v as [B, H, S, D] (``heads_first``) or [B, S, H, D]."""
    if len(t) < 3 or any(len(x.dims) != 4 for x in t[:3]):
        return None
    q, k, v = (
        x.dims if heads_first else (x.dims[0], x.dims[2], x.dims[1], x.dims[3]) for x in t[:3]
    )
    b, h, sq, d = q
    sk, dv = k[2], v[3]
    if k[3] != d or v[2] != sk or min(b, h, sq, sk, d, dv) <= 0:
        return None
    flops = 2.0 * b * h * sq * sk * (d + dv)
    out = b * h * sq * dv * t[0].size
    return OpCost(ATTENTION, flops, float(sum(x.nbytes for x in t[:3]) + out))


# --- elementwise ------------------------------------------------------------------------------

_FUNCTIONAL = frozenset(
    [
        "add",
        "sub",
        "mul",
        "div",
        "neg",
        "exp",
        "log",
        "pow",
        "rsqrt",
        "sqrt",
        "reciprocal",
        "abs",
        "silu",
        "gelu",
        "relu",
        "sigmoid",
        "tanh",
        "cos",
        "sin",
        "erf",
        "clamp",
        "maximum",
        "minimum",
        "where",
        "softmax",
        "_softmax",
        "log_softmax",
        "_log_softmax",
        "masked_fill",
        "clone",
    ]
)
_REDUCTIONS = frozenset(["sum", "mean", "amax", "amin"])
_WRITE_ONLY = frozenset(["copy_", "fill_", "zero_"])  # write the first input, read the rest


def _elementwise(op: str, t: list[_Tensor]) -> OpCost | None:
    if not t:
        return None
    reads = sum(x.nbytes for x in t)
    if op in _WRITE_ONLY:
        return OpCost(ELEMENTWISE, 0.0, float(reads))
    if op in _REDUCTIONS:
        return OpCost(ELEMENTWISE, float(t[0].numel), float(t[0].nbytes))
    if op.endswith("_") and op[:-1] in _FUNCTIONAL:  # in place: the first input is the output
        return OpCost(ELEMENTWISE, float(t[0].numel), float(reads + t[0].nbytes))
    if op not in _FUNCTIONAL:
        return None
    try:
        shape = np.broadcast_shapes(*(x.dims for x in t))
    except ValueError:
        return None
    numel = math.prod(shape)
    return OpCost(ELEMENTWISE, float(numel), float(reads + numel * t[0].size))


_GEMMS = {
    "aten::mm": _mm,
    "aten::addmm": lambda t: _mm(t, first=1),
    "aten::bmm": _bmm,
    "aten::baddbmm": lambda t: _bmm(t, first=1),
    "aten::matmul": _matmul,
    "aten::linear": _linear,
    "vllm::rocm_unquantized_gemm": _linear,
    "_C::onednn_mm": _onednn_mm,
    "_C::cpu_fused_moe": _fused_moe,
}
_ATTENTION_HEADS_FIRST = frozenset(
    [
        "aten::scaled_dot_product_attention",
        "aten::_scaled_dot_product_flash_attention",
        "aten::_scaled_dot_product_efficient_attention",
        "aten::_scaled_dot_product_cudnn_attention",
        "aten::_scaled_dot_product_flash_attention_for_cpu",
    ]
)
_ATTENTION_SEQ_FIRST = frozenset(
    ["aten::_flash_attention_forward", "aten::_efficient_attention_forward"]
)


def op_cost(sig: Signature) -> OpCost | None:
    """FLOPs and bytes of one call of ``sig.op`` with inputs ``sig``; None when not modelled."""
    name, t = sig.op, tensors(sig)
    gemm = _GEMMS.get(name)
    if gemm is not None:
        return gemm(t)
    if name in _ATTENTION_HEADS_FIRST:
        return _attention(t, heads_first=True)
    if name in _ATTENTION_SEQ_FIRST:
        return _attention(t, heads_first=False)
    if name.startswith("aten::"):
        return _elementwise(name.removeprefix("aten::"), t)
    return None


class OpCosts(NamedTuple):
    """Per event: modelled FLOPs, bytes and op kind (index into OP_KINDS; −1: no cost)."""

    flops: npt.NDArray[np.float64]
    bytes: npt.NDArray[np.float64]
    kind: npt.NDArray[np.int8]


def costs(events: Events) -> OpCosts:
    """Every host op's cost from its shapes; each distinct signature is costed once."""
    per = [op_cost(s) for s in events.shapes.signatures]
    flops = np.array([c.flops if c else 0.0 for c in per] + [0.0])
    size = np.array([c.bytes if c else 0.0 for c in per] + [0.0])
    kind = np.array([OP_KINDS.index(c.kind) if c else NO_VALUE for c in per] + [NO_VALUE])
    sid = np.where(np.isin(events.kind, HOST_KINDS), events.shape_id, NO_VALUE)  # -1: the pad
    return OpCosts(flops[sid], size[sid], kind.astype(np.int8)[sid])


HOST_KINDS = (Kind.CPU_OP, Kind.ANNOTATION)
