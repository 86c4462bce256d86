"""EAGLE draft-tree construction and greedy tree verification.

Tree vocabulary (as in sglang's kernels): a request's draft tree has `n = draft_token_num` nodes;
node 0 is the root (the last verified token), node `k + 1` is the draft token picked by
`selected_index[:, k]`. A selected value `v` was produced under parent slot `v // topk` of
`parent_list`: slot 0 is the root, slot `j > 0` holds the selected value of the parent token.
"""

from __future__ import annotations

import torch

FULL_MASK, QLEN_ONLY, QLEN_ONLY_BITPACKING = 0, 1, 2


def _parent_nodes(parent_list: torch.Tensor, selected_index: torch.Tensor, topk: int, n: int) -> torch.Tensor:
    """`[bs, n - 1]` int64: the parent node of node `k + 1`; 0 = root, -1 = no parent found.

    The parent is the first selected position holding the parent token, as the kernels search.
    """
    bs = selected_index.shape[0]
    sel = selected_index.reshape(bs, n - 1).to(torch.int64)
    if n == 1:
        return sel
    slot = torch.div(sel, topk, rounding_mode="trunc")
    width = parent_list.numel() // bs
    in_range = (slot > 0) & (slot < width)
    if width > 0:
        token = parent_list.reshape(bs, width).to(torch.int64).gather(1, torch.where(in_range, slot, 0))
    else:
        token = torch.zeros_like(sel)
    match = (sel[:, None, :] == token[:, :, None]) & in_range[:, :, None]
    first = match.to(torch.int8).argmax(-1)  # index of the first True
    return torch.where(slot <= 0, 0, torch.where(match.any(-1), first + 1, -1))


def _link_children(parents: list[list[int]], next_token: torch.Tensor, next_sibling: torch.Tensor) -> None:
    """Thread each node's children into first-child / next-sibling lists, in place.

    Visits nodes from last to first like the kernels, so children end up in ascending order and
    pre-existing entries (sglang pre-fills -1) are respected exactly as the kernels do.
    """
    first_child, sibling = next_token.tolist(), next_sibling.tolist()
    for b, row in enumerate(parents):
        for node in range(len(row), 0, -1):
            parent = row[node - 1]
            if parent < 0:
                continue
            if first_child[b][parent] != -1:
                sibling[b][node] = first_child[b][parent]
            first_child[b][parent] = node
    next_token.copy_(torch.tensor(first_child))
    next_sibling.copy_(torch.tensor(sibling))


def _ancestor_rows(parents: torch.Tensor, n: int, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per node: which nodes it attends to (`[bs, n, n]` bool) and its level (`[bs, n]` int64).

    Row t marks the root, t itself and t's ancestors. The walk up takes at most `depth` steps and
    stops at the root or at a node with no parent found (Triton kernel's bounds).
    """
    bs = parents.shape[0]
    rows = torch.zeros(bs, n, n, dtype=torch.bool)
    rows[:, :, 0] = True
    levels = torch.zeros(bs, n, dtype=torch.int64)
    cur = torch.arange(n - 1).expand(bs, n - 1).clone()  # selected position of nodes 1..n-1
    active = torch.ones(bs, n - 1, dtype=torch.bool)
    below_root = rows[:, 1:, :]
    for _ in range(depth):
        if n == 1 or not bool(active.any()):
            break
        col = (cur + 1).unsqueeze(-1)
        below_root.scatter_(2, col, below_root.gather(2, col) | active.unsqueeze(-1))
        levels[:, 1:] += active
        parent = parents.gather(1, cur)
        active &= parent > 0
        cur = torch.where(active, parent - 1, cur)
    return rows, levels


def _write_mask(tree_mask: torch.Tensor, rows: torch.Tensor, seq_lens: torch.Tensor, mode: int) -> None:
    bs, n, _ = rows.shape
    flat = tree_mask.view(-1)
    if mode == QLEN_ONLY:
        flat[: bs * n * n] = rows.reshape(-1).to(flat.dtype)
    elif mode == FULL_MASK:
        seq = seq_lens.reshape(-1).to(torch.int64)
        base = torch.arange(bs) * n * n + (torch.cumsum(seq, 0) - seq) * n
        row_start = base[:, None] + (seq[:, None] + n) * torch.arange(n) + seq[:, None]
        flat[(row_start[:, :, None] + torch.arange(n)).reshape(-1)] = rows.reshape(-1).to(flat.dtype)
    elif mode == QLEN_ONLY_BITPACKING:
        _write_packed_mask(tree_mask, rows)
    else:
        raise ValueError(f"tree_mask_mode must be 0, 1 or 2, got {mode}")


def _write_packed_mask(tree_mask: torch.Tensor, rows: torch.Tensor) -> None:
    """Row r of node t -> bit c of the little-endian word of `num_bytes` at `(b * n + t) * num_bytes`.

    Byte 0 is assigned, later bytes OR-ed in, as the CUDA kernel does (sglang zero-fills first).
    """
    bs, n, _ = rows.shape
    if n > 32:
        raise ValueError(f"QLEN_ONLY_BITPACKING needs draft_token_num <= 32, got {n}")
    num_bytes = 4 if n > 16 else (2 if n > 8 else 1)
    bits = torch.zeros(bs * n, num_bytes * 8, dtype=torch.int64)
    bits[:, :n] = rows.reshape(bs * n, n).to(torch.int64)
    packed = (bits.view(bs * n, num_bytes, 8) << torch.arange(8)).sum(-1).to(torch.uint8)
    region = tree_mask.view(-1).view(torch.uint8)[: bs * n * num_bytes].view(bs * n, num_bytes)
    region |= packed
    region[:, 0] = packed[:, 0]


def build_tree_kernel_efficient_cpu(
    parent_list: torch.Tensor,
    selected_index: torch.Tensor,
    verified_seq_len: torch.Tensor,
    tree_mask: torch.Tensor,
    positions: torch.Tensor,
    retrive_index: torch.Tensor,
    retrive_next_token: torch.Tensor,
    retrive_next_sibling: torch.Tensor,
    topk: int,
    depth: int,
    draft_token_num: int,
    tree_mask_mode: int,
) -> None:
    """Build the EAGLE verify tree: attention mask, positions and retrieval links, in place.

    Twin of sglang's Triton `sgl_build_tree_kernel_efficient_triton` (kernels/ops/speculative/
    spec_tree.py) and, for mode 2, of the CUDA `build_tree_efficient_partial_packed`.

    Args (n = draft_token_num, all index tensors int32 or int64, contiguous):
        parent_list: `[bs, topk * (depth - 1) + 1]` (or `[bs, 0]` when depth == 1), read only.
        selected_index: `[bs, n - 1]`, read only. verified_seq_len: `[bs]` committed lengths.
        tree_mask: MUTATED. FULL_MASK (0): bool/uint8 `[sum(seq_len) * n + bs * n * n]`, row t of
            request b at `b*n*n + n*sum(seq_len[:b]) + (seq_len[b] + n) * t`, only its last n
            columns written; QLEN_ONLY (1): bool/uint8 `[bs * n * n]`; QLEN_ONLY_BITPACKING (2):
            uint8/16/32 `[bs * n]`, n <= 32, expected zero-filled.
        positions: `[bs * n]`; MUTATED to `seq_len + level` of each node.
        retrive_index: `[bs, n]`; MUTATED to `b * n + node`.
        retrive_next_token, retrive_next_sibling: `[bs, n]`, expected pre-filled with -1;
            MUTATED to first-child / next-sibling links (children in ascending node order).
        topk, depth: draft shape. tree_mask_mode: 0, 1 or 2.
    A node whose parent token is not among the selected ones is left unlinked (the kernels
    print a warning and skip it). Cost: O(bs * n^2) tensor work plus an O(bs * n) Python loop.
    """
    bs, n = verified_seq_len.numel(), draft_token_num
    if bs == 0:
        return
    parents = _parent_nodes(parent_list, selected_index, topk, n)
    _link_children(parents.tolist(), retrive_next_token, retrive_next_sibling)
    retrive_index.view(-1)[: bs * n] = torch.arange(bs * n).to(retrive_index.dtype)
    rows, levels = _ancestor_rows(parents, n, depth)
    seq = verified_seq_len.reshape(-1).to(torch.int64)
    positions.view(-1)[: bs * n] = (seq[:, None] + levels).reshape(-1).to(positions.dtype)
    _write_mask(tree_mask, rows, seq, tree_mask_mode)


def _greedy_path(
    candidates: list[int],
    index: list[int],
    first_child: list[int],
    sibling: list[int],
    target: list[int],
    steps: int,
) -> list[int]:
    """Flat indices of one request's accepted nodes, root first: at each level take the first
    child (in sibling order) whose draft token equals the target's prediction after the last
    accepted node; stop when none does, after `steps - 1` levels, or after n tries on one level."""
    path, node = [index[0]], 0
    for _ in range(1, steps):
        want, node = target[path[-1]], first_child[node]
        for _ in range(len(candidates)):
            if node == -1 or candidates[node] == want:
                break
            node = sibling[node]
        else:
            break
        if node == -1:
            break
        path.append(index[node])
    return path


def verify_tree_greedy_cpu(
    predicts: torch.Tensor,
    accept_index: torch.Tensor,
    accept_token_num: torch.Tensor,
    candidates: torch.Tensor,
    retrive_index: torch.Tensor,
    retrive_next_token: torch.Tensor,
    retrive_next_sibling: torch.Tensor,
    target_predict: torch.Tensor,
) -> None:
    """Greedy verification of a draft tree against the target model's argmax, in place.

    Twin of sglang's Triton `verify_tree_greedy_kernel_triton` (kernels/ops/speculative/spec_tree.py).

    Args (bs requests, n draft tokens, s = accept_index.shape[1] = max accepted + 1):
        predicts: `[bs * n]` int32; MUTATED at every accepted flat index i: `predicts[i] =
            target_predict.flat[i]` (the root's included).
        accept_index: `[bs, s]` int32; MUTATED: row b gets its path's flat indices from column 0;
            later columns keep their value (sglang pre-fills -1).
        accept_token_num: `[bs]` int32; MUTATED to the accepted draft count (root excluded).
        candidates, retrive_index, retrive_next_token, retrive_next_sibling, target_predict:
            `[bs, n]` int32/int64, read only; `retrive_index` holds flat indices into
            `target_predict` / `predicts`, the links hold node numbers 0..n-1 or -1.
    Cost: O(bs * s * n) Python steps on lists (pointer chasing; trees are small).
    """
    bs = candidates.shape[0]
    if bs == 0:
        return
    target = target_predict.reshape(-1).tolist()
    paths = [
        _greedy_path(c, i, f, s, target, accept_index.shape[1])
        for c, i, f, s in zip(
            candidates.tolist(),
            retrive_index.tolist(),
            retrive_next_token.tolist(),
            retrive_next_sibling.tolist(),
            strict=True,
        )
    ]
    flat = torch.tensor([i for path in paths for i in path], dtype=torch.int64)
    rows = torch.tensor([b for b, path in enumerate(paths) for _ in path], dtype=torch.int64)
    cols = torch.tensor([k for path in paths for k in range(len(path))], dtype=torch.int64)
    accept_index[rows, cols] = flat.to(accept_index.dtype)
    num_drafts = torch.tensor([len(path) - 1 for path in paths])
    accept_token_num.view(-1)[:bs] = num_drafts.to(accept_token_num.dtype)
    predicts.view(-1)[flat] = target_predict.reshape(-1)[flat].to(predicts.dtype)


def reconstruct_indices_from_tree_mask(
    tree_mask: torch.Tensor,
    verified_seq_len: torch.Tensor,
    positions: torch.Tensor,
    retrive_index: torch.Tensor,
    retrive_next_token: torch.Tensor,
    retrive_next_sibling: torch.Tensor,
    batch_size: int,
    draft_token_num: int,
) -> None:
    """Recover NGRAM verify metadata from a QLEN tree mask, in place (any device).

    Twin of sglang's Triton `_reconstruct_tree_mask_kernel` (kernels/ops/speculative/
    reconstruct_tree.py) and of the CUDA/C++ `reconstruct_indices_from_tree_mask`; sglang imports
    it as `sgl_kernel.speculative.reconstruct_indices_from_tree_mask` on CPU.

    Args (n = draft_token_num): tree_mask: bool/uint8 `[bs * n * n]`, row i of request b marks
        the ancestors of node i (only entries below the diagonal are read); verified_seq_len:
        `[bs]`. MUTATED, all int64 `[bs, n]` (positions `[bs * n]`): positions = seq_len + number
        of ancestors; retrive_index = b * n + node; retrive_next_token = smallest descendant
        k > node (its first child), else -1; retrive_next_sibling = smallest k > node with the
        same parent (parent = nearest ancestor), else -1, and -1 for a node with no ancestor.
    Cost: O(bs * n^2) vectorised.
    """
    bs, n = batch_size, draft_token_num
    if bs == 0:
        return
    idx = torch.arange(n, device=tree_mask.device)
    below = idx[None, :] < idx[:, None]  # [row, col]: col < row
    ancestors = tree_mask.view(-1)[: bs * n * n].view(bs, n, n).to(torch.bool) & below
    parent = torch.where(ancestors, idx, -1).amax(-1)  # [bs, n]
    first_child = torch.where(ancestors, idx[:, None], n).amin(1)  # over rows k, per column
    same_parent = (parent[:, :, None] == parent[:, None, :]) & below  # [b, k, node]: k > node
    first_sibling = torch.where(same_parent, idx[:, None], n).amin(1)
    seq = verified_seq_len.reshape(-1)[:bs].to(torch.int64)
    outputs = (
        (positions, seq[:, None] + ancestors.sum(-1)),
        (retrive_index, torch.arange(bs * n, device=idx.device)),
        (retrive_next_token, torch.where(first_child < n, first_child, -1)),
        (retrive_next_sibling, torch.where((parent >= 0) & (first_sibling < n), first_sibling, -1)),
    )
    for target, value in outputs:
        target.view(-1)[: bs * n] = value.reshape(-1).to(target.dtype)
