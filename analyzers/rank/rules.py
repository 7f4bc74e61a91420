"""The one ordered rule table that names what each kernel / op is.

A rule maps a name pattern to a *family* (what the work is) and a bucket (where its time
goes). Rules are tried in order; the first match wins, so specific patterns come before
general ones. ``scope`` says which events a rule looks at: device activity (GPU kernels,
memcpy/memset) or host ops (``cpu_op`` events: the work itself on a CPU-only run). Host
communication rules also name annotations (``analyzers.rank.classify``): torch's gloo process
group records each call as a ``user_annotation`` span whose name is its profiling title
(torch 2.13 ``libtorch_cpu``: ``gloo:send``, ``gloo:recv``, ``gloo:recvAnySource``,
``gloo:all_reduce``, ``gloo:sparse_all_reduce``, ``gloo:all_gather``, ``gloo:all_to_all``,
``gloo:broadcast``, ``gloo:reduce``, ``gloo:gather``, ``gloo:scatter``, ``gloo:barrier``), next
to the ``c10d::`` op that only enqueues it.

Compute vs HBM here is a **name prior**: GEMMs and prefill attention are taken as
compute-bound, everything that streams memory (decode attention over the KV cache, norms,
elementwise, KV writes, copies, GEMV) as HBM-bound. The roofline stage refines this from
FLOPs and bytes; until it runs, reports say the split comes from this prior.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from tracekit.core import buckets as b

Scope = Literal["device", "host", "any"]


@dataclass(frozen=True)
class Rule:
    family: str
    bucket: str
    scope: Scope
    pattern: re.Pattern[str]


def _rule(family: str, bucket: str, scope: Scope, pattern: str) -> Rule:
    return Rule(family, bucket, scope, re.compile(pattern, re.IGNORECASE))


#: Family of device work that no rule names: kept apart and listed, never hidden.
UNCLASSIFIED: Final = "unclassified"
UNCLASSIFIED_BUCKET: Final = b.COMPUTE

RULES: Final[tuple[Rule, ...]] = (
    # --- collectives: NCCL / RCCL kernels, custom and symmetric-memory all-reduce -------------
    _rule("p2p", b.BUBBLE, "device", r"^nccl(Dev)?Kernel_(SendRecv|Send|Recv)"),
    _rule("all_reduce", b.COLLECTIVE, "device", r"^nccl(Dev)?Kernel_AllReduce"),
    _rule("all_gather", b.COLLECTIVE, "device", r"^nccl(Dev)?Kernel_AllGather"),
    _rule("reduce_scatter", b.COLLECTIVE, "device", r"^nccl(Dev)?Kernel_ReduceScatter"),
    _rule("all_to_all", b.COLLECTIVE, "device", r"^nccl(Dev)?Kernel_(AllToAll|AlltoAll)"),
    _rule(
        "other_collective",
        b.COLLECTIVE,
        "device",
        r"^nccl(Dev)?Kernel_|^ncclKernel|^rccl|^nccl_|^mscclKernel",
    ),
    _rule(
        "all_reduce",
        b.COLLECTIVE,
        "device",
        r"cross_device_reduce_(1|2)stage|multimem_all_reduce|(one|two)_?shot_all_?reduce"
        r"|allreduce_fusion_kernel|quick_?all_?reduce|custom_?all_?reduce|all_reduce_kernel",
    ),
    # --- MoE: EP dispatch/combine and routing before expert GEMMs -----------------------------
    _rule(
        "ep_dispatch_combine",
        b.MOE_ROUTING,
        "device",
        r"deep_ep::.*(dispatch|combine)|^(intranode|internode)::.*(dispatch|combine)"
        r"|pplx.*(dispatch|combine)|moe_(dispatch|combine)",
    ),
    _rule(
        "moe_routing",
        b.MOE_ROUTING,
        "device",
        r"topkGating|topk_?gating|moe_align_block_size|count_and_sort_expert_tokens"
        r"|_combined_routing|routing_?(compute|memset|kernel)|bitmatrix|expt_data"
        r"|moe_permute|moe_unpermute|grouped_topk|topk_softmax|moe_sum|moe_fused_gate"
        r"|expert_?map|shuffle_rows|compute_expert_offsets|MoeSort|moe_?sort",
    ),
    _rule(
        "moe_gemm",
        b.COMPUTE,
        "device",
        r"fused_moe_kernel|cutlass_3x_group_gemm|matmul_ogs|grouped_?gemm|ck_moe|fused_moe"
        r"|moe_gemm|group_gemm|bmm_.*expert|MoeFlatmm",
    ),
    # --- attention and the KV cache ---------------------------------------------------------
    _rule(
        "kv_write",
        b.HBM,
        "device",
        r"reshape_and_cache(_flash)?|concat_and_cache_mla|store_kv_?cache|kv_?cache_?(update|store)",
    ),
    _rule(
        "attention_prefill",
        b.COMPUTE,
        "device",
        r"BatchPrefillWith|prefill.*att|att.*prefill|fmha_?fwd|fmhaSm|cutlass.*fmha",
    ),
    _rule(
        "attention_decode",
        b.HBM,
        "device",
        r"BatchDecodeWith|paged_attention|decode.*att|att.*decode|flash_fwd_splitkv"
        r"|splitkv|mla_?decode|FlashAttnFwd|flash_fwd|kernel_unified_attention"
        r"|unified_attention|flash_?attn|attn_fwd|_fwd_kernel|pa_fwd|mha_?fwd|attention",
    ),
    # --- dense linear algebra -----------------------------------------------------------------
    _rule("gemv", b.HBM, "device", r"gemv|gemvx|splitKreduce_kernel"),
    _rule(
        "gemm",
        b.COMPUTE,
        "device",
        r"nvjet_|xmma_gemm|cutlass.*gemm|^Cijk_|gemm|sm\d+_xmma|wgmma|hgemm|sgemm|cublas"
        r"|triton_tem|_mm_|implicit_convolve|conv|wvSplitK|matmul|hipblaslt|rocblas",
    ),
    # --- memory-streaming kernels -------------------------------------------------------------
    _rule(
        "norm",
        b.HBM,
        "device",
        r"rms_?norm|layer_?norm|group_?norm|batch_?norm|bn_(fw|bw)_|GammaBeta|RowwiseMoments"
        r"|ComputeInternalGradients|welford",
    ),
    _rule("activation", b.HBM, "device", r"silu|gelu|act_and_mul|swiglu|relu|sigmoid|tanh"),
    _rule("rotary", b.HBM, "device", r"rotary|rope"),
    _rule(
        "sampling",
        b.HBM,
        "device",
        r"topk|top_k|sort|argmax|sampl|multinomial|cumsum|softmax|log_softmax|radix|bitonic"
        r"|rocprim|DeviceScan|DeviceReduce|DeviceSelect|DeviceRadix|DeviceSegmented",
    ),
    _rule(
        "elementwise",
        b.HBM,
        "device",
        r"elementwise|vectorized_|unrolled_|reduce_kernel|triton_(poi|red|per)_|index|gather"
        r"|scatter|copy|cat_|fill|embedding|cast|transpose|permute|where|masked|clamp|pow"
        r"|exp|add|mul|div|sub|neg|abs|bitwise|compare|amax|quant|nchwToNhwc|nhwcToNchw"
        r"|reduce_segments|kv_indices|_to_copy|flip|roll|pad|im2col|col2im",
    ),
    # --- host ops of vLLM's CPU backend and of torch on the CPU -------------------------------
    _rule(
        "all_reduce",
        b.COLLECTIVE,
        "host",
        r"^_C::shm_allreduce|^vllm::all_reduce|^c10d::allreduce|^gloo:(sparse_)?all_?reduce"
        r"|^nccl:all_reduce|^_C::.*all_?reduce",
    ),
    _rule(
        "all_gather",
        b.COLLECTIVE,
        "host",
        r"^_C::shm_all_?gather|^vllm::all_gather|^c10d::(_)?allgather|^_C::.*all_?gather"
        r"|^gloo:all_?gather",
    ),
    _rule(
        "reduce_scatter",
        b.COLLECTIVE,
        "host",
        r"^_C::.*reduce_scatter|^vllm::reduce_scatter|^c10d::(_)?reduce_scatter"
        r"|^gloo:reduce_?scatter",
    ),
    _rule(
        "all_to_all",
        b.COLLECTIVE,
        "host",
        r"^c10d::alltoall|^_C::.*all_?to_?all|^gloo:all_?to_?all",
    ),
    _rule(
        "other_collective",
        b.COLLECTIVE,
        "host",
        r"^c10d::(broadcast|reduce_|barrier)|^gloo:(broadcast|reduce|gather|scatter|barrier)$",
    ),
    _rule(
        "p2p",
        b.BUBBLE,
        "host",
        r"^_C::shm_(send|recv)_tensor_list|^c10d::(send|recv)|^vllm::.*(send|recv)"
        r"|^gloo:(send|recv)",
    ),
    _rule(
        "moe_routing",
        b.MOE_ROUTING,
        "host",
        r"^_C::.*(topk|grouped_topk|moe_align|moe_sum|moe_permute|moe_unpermute)"
        r"|^_moe_C::|^vllm::.*topk",
    ),
    _rule("moe_gemm", b.COMPUTE, "host", r"^_C::cpu_fused_moe|^_C::.*fused_moe|^vllm::.*moe"),
    _rule(
        "kv_write",
        b.HBM,
        "host",
        r"reshape_and_cache|concat_and_cache|^vllm::unified_kv_cache_update|kv_cache_update",
    ),
    _rule(
        "attention_decode",
        b.HBM,
        "host",
        r"^_C::cpu_attention|^_C::.*paged_attention|^_C::.*attn|^vllm::unified_attention"
        r"|^vllm::.*attention|^aten::_?scaled_dot_product|^aten::_flash_attention",
    ),
    _rule(
        "gemm",
        b.COMPUTE,
        "host",
        r"^_C::onednn_(scaled_)?mm|^_C::.*gemm|^_C::.*mm$|^aten::(mm|addmm|bmm|baddbmm|matmul"
        r"|linear|_addmm_activation)$|^mkldnn|^aten::mkldnn|^aten::convolution",
    ),
    _rule("norm", b.HBM, "host", r"^_C::.*rms_norm|^aten::.*(layer|rms|group)_norm"),
    _rule(
        "activation",
        b.HBM,
        "host",
        r"^_C::(silu|gelu|.*act_and_mul)|^aten::(silu|gelu|relu|sigmoid|tanh)",
    ),
    _rule("rotary", b.HBM, "host", r"^_C::.*rotary|rope"),
    _rule(
        "sampling",
        b.HBM,
        "host",
        r"^aten::(topk|sort|argmax|argsort|multinomial|cumsum|_?softmax|_?log_softmax"
        r"|exponential_|uniform_|gather|max)$|^_C::.*(argmax|sampl|top_?k_?top_?p)",
    ),
    # torch.compile at run time (a new shape, a recompile): dynamo's own ranges, which own
    # everything under them (the fake-tensor aten ops of tracing are no model work)
    _rule(
        "compile",
        b.HOST,
        "host",
        r"^dynamo$|\(dynamo_timed\)$|^entire_frame_compile$|^compile_attempt_\d+$"
        r"|^build_guards$|^backend_compile$|^AOTAutogradCache\.|^PyCodeCache\.|^inductor_compile",
    ),
    _rule(
        "framework",
        b.HOST,
        "host",
        r"^aten::(empty|empty_strided|empty_like|view|_reshape_alias|reshape|slice|select"
        r"|as_strided|detach|alias|unsqueeze|squeeze|expand|t|transpose|permute|contiguous"
        r"|resize_|set_|lift_fresh|_unsafe_view|narrow|split|chunk|unbind|split_with_sizes"
        r"|is_nonzero|item|_local_scalar_dense|result_type|to|_to_copy|numpy_T|flatten"
        r"|unflatten|view_as|lift|_has_compatible_shallow_copy_type|new_empty|movedim"
        r"|resolve_conj|resolve_neg|clone|_unsafe_split|unfold)$"
        r"|^Torch-Compiled Region|^TorchDynamo|^## Call CompiledFxGraph|^Pregraph bytecode"
        r"|^AOTDispatcher|^CompiledFunction|^_C::(get_scheduler_metadata|compute_slot_mapping)",
    ),
    _rule(
        "elementwise",
        b.HBM,
        "host",
        r"^aten::(add|add_|mul|mul_|sub|sub_|div|div_|neg|abs|exp|log|pow|rsqrt|sqrt|copy_"
        r"|cat|index|index_select|index_put_|index_copy_|embedding|fill_|zero_|zeros"
        r"|ones|full|arange|where|masked_fill_?|clamp|clamp_|mean|sum|eq|ne|lt|gt|le|ge"
        r"|bitwise_.*|logical_.*|repeat|repeat_interleave|scatter_?|scatter_add_?|stack"
        r"|fmod|remainder|maximum|minimum|any|all|nonzero|cumsum_?|sort|flip"
        r"|_index_put_impl_|lerp|floor_divide|ceil|floor|round|reciprocal|mv)$",
    ),
)

#: Families in report order, each with its bucket (a family belongs to exactly one bucket).
FAMILY_BUCKET: Final[dict[str, str]] = {
    **{r.family: r.bucket for r in RULES},
    "memcpy": b.HBM,
    "memset": b.HBM,
    UNCLASSIFIED: UNCLASSIFIED_BUCKET,
}


def classify_name(name: str, scope: Literal["device", "host"]) -> str:
    """The family of ``name`` under ``scope``; ``UNCLASSIFIED`` when no rule matches."""
    for rule in RULES:
        if rule.scope in (scope, "any") and rule.pattern.search(name):
            return rule.family
    return UNCLASSIFIED
