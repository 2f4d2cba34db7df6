"""Negatives for any contrastive training loop: similarities, band masks and the banded InfoNCE
loss, for a queue (MoCo) and for in-batch negatives (SimCLR, MoCo v3, CLIP). Public and stable.

Notation: N queries, each with one positive and K negatives; similarities are cosines (inputs
L2-normalised) before temperature, logits are similarities / T; rank 1 = the most similar
negative = the hardest. Restricting your own loss to a band takes two lines::

    mask = band_mask(l_neg, parse_band("0-5"))        # (N, K) bool or None (= all)
    loss = info_nce(l_pos, l_neg, temperature, mask).mean()

Bands (``0-5``, ``5-100``, ``0-5,50-55``, ``random:5``) and their exact count rule are in
:mod:`hardstat.bands`; ``band_mask`` keeps, for each query separately, the ranks of
``Band.rank_intervals(K)`` among its own K negatives (for in-batch negatives, among the
``2B - 2`` or ``B - 1`` of its row). Pass the band's spec to
:meth:`hardstat.record.Recorder.create` so the run records which band the loss used.

The queue functions are those of ``hardstat train`` (:mod:`hardstat.train.negatives`); the
in-batch layouts are :func:`nt_xent_similarities` (SimCLR) and :func:`cross_view_similarities`
(MoCo v3, CLIP). Imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hardstat.bands import Band, parse_band
from hardstat.train.negatives import band_mask, info_nce, rank_order, ranks_from_order, similarities

__all__ = [
    "Band",
    "InBatch",
    "band_mask",
    "cross_view_similarities",
    "info_nce",
    "nt_xent_similarities",
    "parse_band",
    "rank_order",
    "ranks_from_order",
    "similarities",
]


@dataclass(frozen=True)
class InBatch:
    """Similarities of in-batch negatives, ready for :func:`band_mask`, :func:`info_nce` and the
    recorder (``neg_ids = sample_ids[neg_index]``).

    ``l_pos`` (N,) and ``l_neg`` (N, K) are similarities; ``query_index`` (N,) and ``neg_index``
    (N, K) are positions 0..B-1 in the batch of the query's and of each negative's sample.
    """

    l_pos: torch.Tensor  # (N,)
    l_neg: torch.Tensor  # (N, K)
    query_index: torch.Tensor  # (N,) int64
    neg_index: torch.Tensor  # (N, K) int64


def nt_xent_similarities(z1: torch.Tensor, z2: torch.Tensor) -> InBatch:
    """SimCLR's NT-Xent layout: each of the 2B views is a query; its positive is the other view
    of its sample, its K = 2B - 2 negatives both views of every other sample.

    z1, z2: (B, C) L2-normalised embeddings of the two views (row i = sample i). Rows of the
    result: the B view-1 queries, then the B view-2 queries (N = 2B); a query's negatives are
    the columns of ``cat([z1, z2])`` without the query and its positive: the other samples'
    view 1, then their view 2 (each other sample twice, with the same sample id).
    ``info_nce(l_pos, l_neg, T, None).mean()`` is the NT-Xent loss (lightly's ``NTXentLoss``).
    Log one row per sample, e.g. the first B rows (view 1 as the query): a logged query is
    identified by (step, query_id).
    """
    b = z1.shape[0]
    z = torch.cat([z1, z2]).float()  # (2B, C)
    sim = z @ z.T  # (2B, 2B)
    rows = torch.arange(2 * b, device=z.device)  # (2B,)
    pos = (rows + b) % (2 * b)  # (2B,): the other view of the same sample
    keep = torch.ones(2 * b, 2 * b, dtype=torch.bool, device=z.device)  # (2B, 2B)
    keep[rows, rows] = False  # not itself
    keep[rows, pos] = False  # not its positive
    l_pos = sim[rows, pos]  # (2B,)
    l_neg = sim[keep].view(2 * b, 2 * b - 2)  # (2B, 2B - 2), row order kept
    neg_index = (rows.expand(2 * b, 2 * b)[keep] % b).view(2 * b, 2 * b - 2)  # (2B, 2B - 2)
    return InBatch(l_pos, l_neg, rows % b, neg_index)


def cross_view_similarities(q: torch.Tensor, k: torch.Tensor) -> InBatch:
    """The MoCo v3 / CLIP layout: query i against the keys of the other view (or modality);
    its positive is key i, its K = B - 1 negatives the keys j != i.

    q, k: (B, C) L2-normalised (row i = sample i). ``info_nce(l_pos, l_neg, T, None)`` equals
    ``cross_entropy(q @ k.T / T, arange(B))`` per row; for a symmetric loss (MoCo v3, CLIP)
    call it again with q and k swapped.
    """
    b = q.shape[0]
    q, k = q.float(), k.float()
    sim = q @ k.T  # (B, B): sim[i, j] = query i with key j
    off = ~torch.eye(b, dtype=torch.bool, device=q.device)  # (B, B)
    l_pos = sim.diagonal()  # (B,)
    l_neg = sim[off].view(b, b - 1)  # (B, B - 1)
    cols = torch.arange(b, device=q.device)  # (B,)
    neg_index = cols.expand(b, b)[off].view(b, b - 1)  # (B, B - 1)
    return InBatch(l_pos, l_neg, cols, neg_index)
