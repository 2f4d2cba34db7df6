"""lightly's memory bank, keeping the provenance of every key (``pip install hardstat[lightly]``).

lightly's :class:`~lightly.models.modules.memory_bank.MemoryBankModule` (the queue behind
``NTXentLoss(memory_bank_size=(K, dim))``, MoCo style) stores keys only. :class:`IdMemoryBank`
is the same module that also stores, per slot, the ``sample_id`` of the image whose key it holds
and the step that enqueued it, and keeps what the loss saw at the last call (``seen``), which is
what :meth:`hardstat.record.Recorder.log_step` needs::

    criterion = NTXentLoss(temperature=0.1, memory_bank_size=(K, 128))
    criterion.memory_bank = bank = IdMemoryBank(size=(K, 128))

    bank.next_batch(sample_ids, step)   # the ids of the keys this step enqueues
    loss = criterion(query, key)        # lightly's loss: reads the bank, then enqueues key
    l_pos, l_neg = similarities(F.normalize(query), F.normalize(key), bank.seen.keys)
    recorder.log_step(step, ..., neg_ids=bank.seen.sample_ids, neg_key_steps=bank.seen.key_steps)

Unlike lightly's (which registers them as non-persistent buffers), the keys, the pointer, the ids
and the key steps are saved in ``state_dict()``, so a run resumed from a checkpoint continues
with the same negatives. Single process only (``gather_distributed`` is not supported).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from lightly.models.modules.memory_bank import MemoryBankModule


@dataclass(frozen=True)
class SeenNegatives:
    """The bank as a loss call saw it (before that call enqueued its keys)."""

    keys: torch.Tensor  # (K, C) the negative keys
    sample_ids: torch.Tensor  # (K,) sample_id of each slot's key, -1 = random initial key
    key_steps: torch.Tensor  # (K,) step that enqueued each slot's key, -1 = random initial key


class IdMemoryBank(MemoryBankModule):
    """lightly's memory bank of ``size = (K, dim)`` keys, plus each slot's sample id and
    enqueue step (``sample_ids``, ``key_steps``: -1 for the random initial keys)."""

    sample_ids: torch.Tensor
    key_steps: torch.Tensor

    def __init__(self, size: Sequence[int], feature_dim_first: bool = True) -> None:
        size = tuple(size)
        if len(size) != 2 or size[0] <= 0:
            raise ValueError(f"IdMemoryBank needs size=(K, dim) with K > 0, got {size}")
        super().__init__(size=size, gather_distributed=False, feature_dim_first=feature_dim_first)
        # saved with the model, unlike lightly's own buffers, so a resumed run keeps its queue
        self.register_buffer("bank", self.bank, persistent=True)
        self.register_buffer("bank_ptr", self.bank_ptr, persistent=True)
        self.register_buffer("sample_ids", torch.full((size[0],), -1, dtype=torch.long))
        self.register_buffer("key_steps", torch.full((size[0],), -1, dtype=torch.long))
        self._batch: tuple[torch.Tensor, int] | None = None
        self.seen: SeenNegatives | None = None

    def next_batch(self, sample_ids: torch.Tensor, step: int) -> None:
        """The sample ids (B,) and step of the keys the next updating call will enqueue."""
        self._batch = (torch.as_tensor(sample_ids).detach().long(), int(step))

    def forward(
        self,
        output: torch.Tensor,
        labels: torch.Tensor | None = None,
        update: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """lightly's forward (returns the output and the bank before the update), recording
        what was seen and which sample ids the updated slots now hold."""
        self.seen = SeenNegatives(
            self.bank.detach().clone(), self.sample_ids.clone(), self.key_steps.clone()
        )
        if not update:
            return super().forward(output, labels, update)
        if self._batch is None:
            raise ValueError(
                "IdMemoryBank: call next_batch(sample_ids, step) before the loss updates the bank"
            )
        ids, step = self._batch
        if ids.shape != (output.shape[0],):
            raise ValueError(
                f"IdMemoryBank: next_batch got {tuple(ids.shape)} sample ids for a batch of "
                f"{output.shape[0]} keys"
            )
        ptr = int(self.bank_ptr)
        result = super().forward(output, labels, update)
        new = int(self.bank_ptr)
        written = new - ptr if new > ptr else self.size[0] - ptr  # lightly drops a wrapped rest
        self.sample_ids[ptr : ptr + written] = ids[:written].to(self.sample_ids.device)
        self.key_steps[ptr : ptr + written] = step
        self._batch = None
        return result
