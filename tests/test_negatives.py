"""The public negatives module: in-batch layouts (SimCLR, MoCo v3 / CLIP) against slow loops."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from hardstat.negatives import (  # noqa: E402
    band_mask,
    cross_view_similarities,
    info_nce,
    nt_xent_similarities,
    parse_band,
)


def unit(b: int, c: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(b, c, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_nt_xent_layout_against_a_loop() -> None:
    b, t = 5, 0.2
    z1, z2 = unit(b, 8, 0), unit(b, 8, 1)
    s = nt_xent_similarities(z1, z2)
    assert s.l_neg.shape == (2 * b, 2 * b - 2) and s.neg_index.shape == (2 * b, 2 * b - 2)
    z = torch.cat([z1, z2])
    losses = []
    for i in range(2 * b):  # slow reference: row i against every other view but its positive
        pos = (i + b) % (2 * b)
        others = [j for j in range(2 * b) if j not in (i, pos)]
        assert s.query_index[i] == i % b
        assert s.l_pos[i] == pytest.approx(float(z[i] @ z[pos]), abs=1e-6)
        assert s.l_neg[i].tolist() == pytest.approx([float(z[i] @ z[j]) for j in others], abs=1e-6)
        assert s.neg_index[i].tolist() == [j % b for j in others]
        assert i % b not in s.neg_index[i].tolist()  # never its own sample
        logits = torch.tensor([float(z[i] @ z[pos])] + [float(z[i] @ z[j]) for j in others]) / t
        losses.append(-torch.log_softmax(logits, 0)[0])
    got = info_nce(s.l_pos, s.l_neg, t, None)  # (2B,)
    assert torch.allclose(got, torch.stack(losses), atol=1e-5)


def test_cross_view_layout_is_the_clip_loss() -> None:
    b, t = 6, 0.1
    q, k = unit(b, 4, 2), unit(b, 4, 3)
    s = cross_view_similarities(q, k)
    assert s.l_neg.shape == (b, b - 1)
    for i in range(b):
        cols = [j for j in range(b) if j != i]
        assert s.neg_index[i].tolist() == cols
        assert s.l_neg[i].tolist() == pytest.approx([float(q[i] @ k[j]) for j in cols], abs=1e-6)
    expect = F.cross_entropy(q @ k.T / t, torch.arange(b), reduction="none")  # (B,)
    assert torch.allclose(info_nce(s.l_pos, s.l_neg, t, None), expect, atol=1e-5)


@pytest.mark.parametrize("spec", ["0-5", "5-100", "0-50,75-100", "random:25"])
def test_band_mask_per_query_over_in_batch_negatives(spec: str) -> None:
    b = 9
    s = nt_xent_similarities(unit(b, 16, 4), unit(b, 16, 5))  # K = 2B - 2 = 16
    band = parse_band(spec)
    mask = band_mask(s.l_neg, band, torch.Generator().manual_seed(0))
    assert mask is not None
    assert (mask.sum(1) == band.kept_count(2 * b - 2)).all()
    if not band.is_random:  # each row keeps its own hardest ranks
        ranks = s.l_neg.argsort(1, descending=True).argsort(1) + 1  # (2B, K) 1-based
        keep = torch.zeros_like(mask)
        for lo, hi in band.rank_intervals(2 * b - 2):
            keep |= (ranks > lo) & (ranks <= hi)
        assert torch.equal(mask, keep)
    banded = info_nce(s.l_pos, s.l_neg, 0.5, mask)
    assert torch.isfinite(banded).all() and (banded <= info_nce(s.l_pos, s.l_neg, 0.5, None)).all()
    assert math.isfinite(float(banded.mean()))


@pytest.mark.parametrize("spec", ["0-5", "0-25", "50-75", "5-100", "0-10,90-100"])
def test_band_mask_with_ties_keeps_the_values_of_its_ranks(spec: str) -> None:
    """Similarities on 4 levels (many ties, as float16 logits give): ties may be broken either
    way, but the similarities a query keeps are, as a multiset, those at the band's ranks of
    its own sorted list (a slow loop, one query at a time)."""
    g = torch.Generator().manual_seed(0)
    l_neg = (torch.randint(0, 4, (6, 40), generator=g).float() - 1.5) / 2  # (N, K), 4 levels
    band = parse_band(spec)
    mask = band_mask(l_neg, band)
    assert mask is not None
    for i, row in enumerate(l_neg.tolist()):
        ranked = sorted(row, reverse=True)  # rank r (1-based) is ranked[r - 1]
        expect = sorted(v for lo, hi in band.rank_intervals(len(row)) for v in ranked[lo:hi])
        kept = sorted(v for v, keep in zip(row, mask[i].tolist(), strict=True) if keep)
        assert kept == expect
