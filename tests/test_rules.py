"""The rule table, rule by rule: each rule is the first match for its example names."""

from __future__ import annotations

import pytest

from analyzers.rank.rules import FAMILY_BUCKET, RULES, UNCLASSIFIED, classify_name
from tracekit.core import buckets

# (scope, name, family): real names from vLLM 0.32 CPU traces, vLLM GPU kernels (VLLM_CPU.md),
# and the shared GPU traces. Every rule must be the *first* match of at least one example.
EXAMPLES = [
    ("device", "ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)", "p2p"),
    ("device", "ncclKernel_AllReduce_RING_LL_Sum_float(ncclWorkElem)", "all_reduce"),
    ("device", "ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "all_gather"),
    ("device", "ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL", "reduce_scatter"),
    ("device", "ncclDevKernel_AllToAll", "all_to_all"),
    ("device", "ncclDevKernel_Generic_4(ncclDevKernelArgsStorage<4096ul>)", "other_collective"),
    ("device", "void vllm::cross_device_reduce_1stage<__nv_bfloat16, 8>(...)", "all_reduce"),
    ("device", "multimem_all_reduce_kernel", "all_reduce"),
    ("device", "void deep_ep::intranode::dispatch<8, 768>(...)", "ep_dispatch_combine"),
    ("device", "void vllm::moe::topkGatingSoftmax<float, 8>(...)", "moe_routing"),
    ("device", "void vllm::moe::moe_align_block_size_kernel<int>(...)", "moe_routing"),
    ("device", "_combined_routing_compute", "moe_routing"),
    ("device", "fused_moe_kernel", "moe_gemm"),
    ("device", "_matmul_ogs_NNT_bf16xbf16xmxfp4_16x256x128x1_swiglu", "moe_gemm"),
    ("device", "void vllm::reshape_and_cache_flash_kernel<__nv_bfloat16>(...)", "kv_write"),
    ("device", "BatchPrefillWithPagedKVCacheKernel<...>", "attention_prefill"),
    (
        "device",
        "void flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128>>(...)",
        "attention_decode",
    ),
    ("device", "kernel_unified_attention_2d", "attention_decode"),
    ("device", "void gemv2T_kernel_val<int, int, float>(...)", "gemv"),
    ("device", "nvjet_tst_128x64_64x4_1x2_h_bz_coopA_NTN", "gemm"),
    ("device", "Cijk_Alik_Bljk_BBS_BH_MT64x64x64", "gemm"),
    ("device", "void vllm::rms_norm_kernel<c10::BFloat16>(...)", "norm"),
    (
        "device",
        "void vllm::act_and_mul_kernel<c10::BFloat16, &vllm::silu_kernel>(...)",
        "activation",
    ),
    ("device", "void vllm::rotary_embedding_kernel<c10::BFloat16, true>(...)", "rotary"),
    ("device", "void at::native::sbtopk::gatherTopK<float, unsigned int, 2>(...)", "sampling"),
    ("device", "void at::native::vectorized_elementwise_kernel<4, ...>(...)", "elementwise"),
    ("host", "_C::shm_allreduce", "all_reduce"),
    ("host", "_C::shm_all_gather", "all_gather"),
    ("host", "vllm::reduce_scatter", "reduce_scatter"),
    ("host", "c10d::alltoall_", "all_to_all"),
    ("host", "c10d::broadcast_", "other_collective"),
    ("host", "_C::shm_send_tensor_list", "p2p"),
    ("host", "_C::shm_recv_tensor_list", "p2p"),
    # gloo's own spans (user_annotation; profiling titles in torch 2.13's libtorch_cpu.so)
    ("host", "gloo:send", "p2p"),
    ("host", "gloo:recv", "p2p"),
    ("host", "gloo:recvAnySource", "p2p"),
    ("host", "gloo:all_reduce", "all_reduce"),
    ("host", "gloo:sparse_all_reduce", "all_reduce"),
    ("host", "gloo:all_gather", "all_gather"),
    ("host", "gloo:all_to_all", "all_to_all"),
    ("host", "gloo:broadcast", "other_collective"),
    ("host", "gloo:reduce", "other_collective"),
    ("host", "gloo:gather", "other_collective"),
    ("host", "gloo:scatter", "other_collective"),
    ("host", "gloo:barrier", "other_collective"),
    ("host", "c10d::recv_", "p2p"),
    ("host", "c10d::_allgather_base_", "all_gather"),
    ("host", "_moe_C::topk_softmax", "moe_routing"),
    ("host", "_C::cpu_fused_moe", "moe_gemm"),
    ("host", "vllm::unified_kv_cache_update", "kv_write"),
    ("host", "_C::cpu_attn_reshape_and_cache", "kv_write"),
    ("host", "_C::cpu_attention_with_kv_cache", "attention_decode"),
    ("host", "vllm::unified_attention_with_output", "attention_decode"),
    ("host", "_C::onednn_mm", "gemm"),
    ("host", "aten::addmm", "gemm"),
    ("host", "_C::rms_norm", "norm"),
    ("host", "aten::silu", "activation"),
    ("host", "_C::rotary_embedding", "rotary"),
    ("host", "_C::greedy_argmax", "sampling"),
    ("host", "aten::topk", "sampling"),
    ("host", "Torch-Compiled Region: 0/1", "framework"),
    ("host", "dynamo", "compile"),
    ("host", "build_guards (dynamo_timed)", "compile"),
    ("host", "compile_attempt_0", "compile"),
    ("host", "aten::empty_strided", "framework"),
    ("host", "aten::copy_", "elementwise"),
]


@pytest.mark.parametrize(("scope", "name", "family"), EXAMPLES)
def test_example_classifies(scope: str, name: str, family: str) -> None:
    assert classify_name(name, scope) == family  # type: ignore[arg-type]


def _first_rule(scope: str, name: str) -> int:
    return next(
        i for i, r in enumerate(RULES) if r.scope in (scope, "any") and r.pattern.search(name)
    )


def test_every_rule_is_exercised() -> None:
    hit = {_first_rule(scope, name) for scope, name, _ in EXAMPLES}
    missing = [
        f"{r.scope}:{r.family}:{r.pattern.pattern[:40]}"
        for i, r in enumerate(RULES)
        if i not in hit
    ]
    assert not missing


def test_unknown_names_stay_unclassified() -> None:
    assert classify_name("my_custom_kernel_v3", "device") == UNCLASSIFIED
    assert classify_name("mylib::frobnicate", "host") == UNCLASSIFIED


def test_scopes_are_separate() -> None:
    # Host rules never judge kernels, device rules never judge cpu ops.
    assert classify_name("_C::onednn_mm", "device") == UNCLASSIFIED
    assert classify_name("nvjet_tst_128x64", "host") == UNCLASSIFIED


def test_each_family_has_one_design_bucket() -> None:
    for rule in RULES:
        assert FAMILY_BUCKET[rule.family] == rule.bucket, rule.family
    assert set(FAMILY_BUCKET.values()) <= set(buckets.BUCKETS)
