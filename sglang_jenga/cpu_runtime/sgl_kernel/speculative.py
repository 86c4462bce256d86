"""`sgl_kernel.speculative`: the submodule path sglang imports from directly.

sglang 0.5.23's kernels/ops/speculative/reconstruct_tree.py does
`from sgl_kernel.speculative import reconstruct_indices_from_tree_mask` on CPU (NGRAM decoding).
"""

from .spec_tree import reconstruct_indices_from_tree_mask

__all__ = ["reconstruct_indices_from_tree_mask"]
