"""Build sglang 0.5.23's own pools, allocators and tree caches on the CPU, as its unit tests do
(sglang/test/kits/unified_radix_cache/fixtures.py), for the benchmarks.

Every builder returns `SglangPools(req_to_token_pool, allocator, cache)` with the real classes:

  build_full   MHATokenToKVPool + TokenToKVPoolAllocator + UnifiedRadixCache(FULL)
  build_swa    SWAKVPool + SWATokenToKVPoolAllocator + UnifiedRadixCache(FULL, SWA)
  build_mamba  HybridReqToTokenPool (MambaPool) + HybridLinearKVPool + TokenToKVPoolAllocator +
               UnifiedRadixCache(FULL, MAMBA), no_buffer Mamba strategy

The pools are sized in tokens / slots as sglang sizes them; the tensors behind them are tiny (one KV head of
width `head_dim`, one layer per pool, a minimal Mamba2 state), which changes nothing the allocators and the
tree decide. page_size is 1 (sglang's default for the fa3/flashinfer/triton backends); `build_swa` takes another
(its paged allocators then run their CPU path, `alloc_extend_naive` / `alloc_decode_naive`: torch ops where a
GPU launches one Triton kernel).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

_READY = False


class SglangPools(NamedTuple):
    req_to_token_pool: Any
    allocator: Any
    cache: Any


def init_sglang() -> None:
    """Import sglang on this machine (CPU engine) and set the global server args the pools read
    (page_size 1, the Mamba chunk size a dummy config cannot supply). Idempotent."""
    global _READY
    if _READY:
        return
    os.environ.setdefault("SGLANG_USE_CPU_ENGINE", "1")
    import torch
    from sglang.kernels.ops.attention.fla.chunk_delta_h import CHUNK_SIZE
    from sglang.srt.server_args import ServerArgs, set_global_server_args_for_scheduler

    torch.set_num_threads(1)  # small tensor ops: OpenMP spin-waits only add noise on a shared CPU
    args = ServerArgs(model_path="dummy", page_size=1)
    args._mamba_cache_chunk_size = CHUNK_SIZE
    set_global_server_args_for_scheduler(args)
    _READY = True


def _cache(req_pool: Any, allocator: Any, components: tuple[Any, ...], tree_core: str | None,
           window: int | None = None, page_size: int = 1) -> Any:
    from sglang.srt.mem_cache.cache_init_params import CacheInitParams
    from sglang.srt.mem_cache.unified_radix_cache import UnifiedRadixCache

    params = CacheInitParams(req_to_token_pool=req_pool, token_to_kv_pool_allocator=allocator, page_size=page_size,
                             disable=False, sliding_window_size=window, tree_components=components,
                             enable_mamba_extra_buffer=False, tree_core_backend=tree_core)
    return UnifiedRadixCache(params=params)


def build_req_pool(req_slots: int, max_context: int) -> Any:
    """sglang's ReqToTokenPool of `req_slots` rows of `max_context` slots, on the CPU."""
    from sglang.srt.mem_cache.memory_pool import ReqToTokenPool

    return ReqToTokenPool(size=req_slots, max_context_len=max_context, device="cpu", enable_memory_saver=False)


def build_full(tokens: int, req_slots: int, max_context: int, tree_core: str | None = None) -> SglangPools:
    """One token pool for every layer (sglang's layout for dense models, Gemma-2/3, mllama)."""
    init_sglang()
    import torch
    from sglang.srt.mem_cache.allocator import TokenToKVPoolAllocator
    from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool
    from sglang.srt.mem_cache.unified_cache.components.base import ComponentType

    kv = MHATokenToKVPool(size=tokens, page_size=1, dtype=torch.bfloat16, head_num=1, head_dim=1, layer_num=1,
                          device="cpu", enable_memory_saver=False)
    alloc = TokenToKVPoolAllocator(size=tokens, dtype=torch.bfloat16, device="cpu", kvcache=kv, need_sort=False)
    req_pool = build_req_pool(req_slots, max_context)
    return SglangPools(req_pool, alloc, _cache(req_pool, alloc, (ComponentType.FULL,), tree_core))


def build_swa(full_tokens: int, swa_tokens: int, window: int, req_slots: int, max_context: int,
              tree_core: str | None = None, head_dim: int = 1, page_size: int = 1) -> SglangPools:
    """Full and sliding-window pools with sglang's SWA allocator and UnifiedRadixCache(FULL, SWA), `page_size`
    tokens per page."""
    init_sglang()
    import torch
    from sglang.srt.mem_cache.allocator.swa import SWATokenToKVPoolAllocator
    from sglang.srt.mem_cache.swa_memory_pool import SWAKVPool
    from sglang.srt.mem_cache.unified_cache.components.base import ComponentType

    sizes = {"size": full_tokens, "size_swa": swa_tokens, "page_size": page_size, "dtype": torch.bfloat16,
             "device": "cpu"}
    kv = SWAKVPool(**sizes, head_num=1, head_dim=head_dim, swa_attention_layer_ids=[0],
                   full_attention_layer_ids=[1])
    alloc = SWATokenToKVPoolAllocator(**sizes, kvcache=kv, need_sort=False)
    req_pool = build_req_pool(req_slots, max_context)
    cache = _cache(req_pool, alloc, (ComponentType.FULL, ComponentType.SWA), tree_core, window, page_size)
    return SglangPools(req_pool, alloc, cache)


def build_mamba(full_tokens: int, mamba_slots: int, req_slots: int, max_context: int,
                tree_core: str | None = None) -> SglangPools:
    """Full-attention pool + `mamba_slots` Mamba states (HybridReqToTokenPool's MambaPool)."""
    init_sglang()
    import torch
    from sglang.srt.configs.mamba_utils import Mamba2CacheParams, Mamba2StateShape
    from sglang.srt.environ import envs
    from sglang.srt.mem_cache.allocator import TokenToKVPoolAllocator
    from sglang.srt.mem_cache.memory_pool import HybridLinearKVPool, HybridReqToTokenPool
    from sglang.srt.mem_cache.unified_cache.components.base import ComponentType

    with envs.SGLANG_MAMBA_SSM_DTYPE.override("bfloat16"):
        shape = Mamba2StateShape.create(tp_world_size=1, intermediate_size=16, n_groups=1, num_heads=2,
                                        head_dim=8, state_size=2, conv_kernel=2)
        params = Mamba2CacheParams(shape=shape, layers=[0])
    req_pool = HybridReqToTokenPool(size=req_slots, mamba_size=mamba_slots, mamba_spec_state_size=1,
                                    max_context_len=max_context, device="cpu", enable_memory_saver=False,
                                    cache_params=params, mamba_layer_ids=[0], enable_mamba_extra_buffer=False,
                                    speculative_num_draft_tokens=1)
    kv = HybridLinearKVPool(size=full_tokens, dtype=torch.bfloat16, page_size=1, head_num=1, head_dim=1,
                            full_attention_layer_ids=[1], device="cpu", enable_memory_saver=False,
                            mamba_pool=req_pool.mamba_pool)
    alloc = TokenToKVPoolAllocator(size=full_tokens, dtype=torch.bfloat16, device="cpu", kvcache=kv,
                                   need_sort=False)
    cache = _cache(req_pool, alloc, (ComponentType.FULL, ComponentType.MAMBA), tree_core)
    return SglangPools(req_pool, alloc, cache)
