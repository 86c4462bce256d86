"""Import-compatible stand-in for `sgl_kernel` on CPU-only machines (see cpu_runtime/__init__).

Holds only names that are implemented, in plain torch. A name that is not here raises
ImportError at `from sgl_kernel import name`, which is what sglang's optional-kernel probes
(`try: from sgl_kernel import x except ImportError`) expect. No `torch.ops.sgl_kernel` op is
registered: sglang probes that namespace with hasattr and then calls what it finds.

Each function keeps the signature of sgl-kernel's CPU wrapper of the same name (upstream
sgl-kernel/python/sgl_kernel and csrc/cpu/) and the semantics of the sglang Triton kernel it
names in its docstring; the names are those sglang 0.5.23 imports when `SGLANG_USE_CPU_ENGINE=1`.
Imports are relative so the package works under both of its names (`sgl_kernel` via the finder,
`sglang_jenga.cpu_runtime.sgl_kernel` directly).
"""

from .eagle import fill_accept_out_cache_loc_cpu, fill_bonus_tokens_cpu, rotate_input_ids_cpu
from .kvcache import copy_all_layer_kv_cache_cpu
from .spec_tree import (
    build_tree_kernel_efficient_cpu,
    reconstruct_indices_from_tree_mask,
    verify_tree_greedy_cpu,
)
from .token_table import (
    assign_draft_cache_locs_contiguous_cpu,
    assign_extend_cache_locs_cpu,
    assign_req_to_token_pool_cpu,
)

__all__ = [
    "assign_draft_cache_locs_contiguous_cpu",
    "assign_extend_cache_locs_cpu",
    "assign_req_to_token_pool_cpu",
    "build_tree_kernel_efficient_cpu",
    "copy_all_layer_kv_cache_cpu",
    "fill_accept_out_cache_loc_cpu",
    "fill_bonus_tokens_cpu",
    "reconstruct_indices_from_tree_mask",
    "rotate_input_ids_cpu",
    "verify_tree_greedy_cpu",
]
