"""Contrastive losses over L2-normalised codes, gathered across DDP ranks.

``multi_positive_infonce`` is the SupCon-style loss: every other item with the same label is a
positive (the stylizations of one style image and the style image itself share its label),
every item with another label is a negative. Under DDP each rank's anchors are its own items,
and the candidates are the whole global batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_local_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' tensors concatenated along dim 0, and where this rank's part starts.

    ``all_gather`` returns tensors without history; this rank's slot is replaced by the local
    tensor so gradients flow into it (each rank backpropagates through its own part and DDP
    averages the parameter gradients).
    """
    if not _distributed():
        return tensor, 0
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    rank = dist.get_rank()
    parts[rank] = tensor
    return torch.cat(parts), rank * tensor.shape[0]


def supcon_loss(anchors: torch.Tensor, anchor_labels: torch.Tensor, candidates: torch.Tensor,
                candidate_labels: torch.Tensor, anchor_offset: int, temperature: float) -> torch.Tensor:
    """Mean over anchors of -mean_{p in P(i)} log softmax_{a != i}(s_ia / t)[p].

    ``anchors`` sit at rows ``anchor_offset..`` of ``candidates``; an anchor never counts as
    its own candidate. Anchors without any positive are left out of the mean.
    """
    logits = anchors @ candidates.T / temperature
    rows = torch.arange(anchors.shape[0], device=anchors.device)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[rows, rows + anchor_offset] = True
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (anchor_labels[:, None] == candidate_labels[None, :]) & ~self_mask
    counts = positives.sum(dim=1)
    has_positive = counts > 0
    # where() instead of multiplying: -inf on the diagonal times 0 would give NaN.
    positive_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    per_anchor = -positive_log_prob[has_positive] / counts[has_positive]
    return per_anchor.mean() if per_anchor.numel() else logits.new_zeros(())


def multi_positive_infonce(codes: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon loss of this rank's ``codes`` against the batch gathered over all ranks."""
    all_codes, offset = gather_with_local_grad(codes)
    all_labels, _ = gather_with_local_grad(labels)
    return supcon_loss(codes, labels, all_codes, all_labels, offset, temperature)


def two_view_loss(view_a: torch.Tensor, view_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """The "SS" term: two augmented views of one image are positives, all else negatives."""
    batch = view_a.shape[0]
    rank = dist.get_rank() if _distributed() else 0
    # Labels unique over the global batch: rank-major image numbers, shared by both views.
    ids = torch.arange(batch, device=view_a.device) + rank * batch
    return multi_positive_infonce(torch.cat([view_a, view_b]), torch.cat([ids, ids]), temperature)
