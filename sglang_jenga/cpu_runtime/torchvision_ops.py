"""Plain-torch torchvision::nms / torchvision::qnms for a CPU torch next to a CUDA torchvision.

torchvision registers fake (meta) kernels for these two ops at import time, which fails unless
the op schemas exist. Defining them with working CPU kernels keeps `import torchvision` alive
and makes `torch.ops.torchvision.nms` usable.
"""

from __future__ import annotations

import torch

_LIB: torch.library.Library | None = None


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, torchvision's semantics.

    boxes: [N, 4] as (x1, y1, x2, y2); scores: [N]. Returns the int64 indices of the kept boxes
    in decreasing score order. Cost O(N^2) time, O(N^2) memory for the IoU matrix.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].to(torch.float64 if boxes.dtype == torch.float64 else torch.float32)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    iou = inter / (area[:, None] + area[None, :] - inter)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if not suppressed[i]:
            suppressed |= iou[i] > iou_threshold
            suppressed[i] = False
    return order[~suppressed]


def _qnms(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    return nms(dets.dequantize(), scores.dequantize(), iou_threshold)


def define_torchvision_ops() -> None:
    """Define the torchvision::nms and ::qnms schemas with CPU kernels (once per process)."""
    global _LIB
    if _LIB is not None:
        return
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", nms, "CPU")
    lib.impl("qnms", _qnms, "QuantizedCPU")
    _LIB = lib
