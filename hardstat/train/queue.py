"""The MoCo queue of negative keys, with the provenance of every slot."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KeyQueue(nn.Module):
    """K keys (K, C) and, per slot, the ``sample_id``, label and step it was enqueued.

    Slots start with random unit keys and ``sample_id = label = step = -1`` (no sample yet). Keys
    are enqueued first-in first-out, overwriting the oldest batch. Everything is a buffer, so it
    travels with ``state_dict()`` into checkpoints and to the module's device.
    """

    keys: torch.Tensor
    sample_ids: torch.Tensor
    labels: torch.Tensor
    steps: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"queue size and key dim must be > 0, got {size}, {dim}")
        self.size = size
        keys = F.normalize(torch.randn(size, dim, generator=generator), dim=1)  # (K, C)
        self.register_buffer("keys", keys)
        self.register_buffer("sample_ids", torch.full((size,), -1, dtype=torch.long))  # (K,)
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))  # (K,)
        self.register_buffer("steps", torch.full((size,), -1, dtype=torch.long))  # (K,)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(
        self, keys: torch.Tensor, sample_ids: torch.Tensor, labels: torch.Tensor, step: int
    ) -> None:
        """Replace the oldest ``B`` slots with keys (B, C) and their provenance (B,)."""
        b = keys.shape[0]
        if self.size % b != 0:
            raise ValueError(f"queue size {self.size} is not a multiple of the batch {b}")
        ptr = int(self.ptr)
        self.keys[ptr : ptr + b] = keys.detach().to(self.keys.dtype)
        self.sample_ids[ptr : ptr + b] = sample_ids
        self.labels[ptr : ptr + b] = labels
        self.steps[ptr : ptr + b] = step
        self.ptr.fill_((ptr + b) % self.size)
