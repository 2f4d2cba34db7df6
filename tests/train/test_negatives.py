import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hardstat.bands import parse_band  # noqa: E402
from hardstat.train.negatives import (  # noqa: E402
    band_mask,
    info_nce,
    rank_order,
    ranks_from_order,
    similarities,
)


def test_band_mask_hand_written() -> None:
    # one query, K = 10 negatives with distinct similarities; ranks by hand:
    l_neg = torch.tensor([[0.1, 0.9, 0.3, 0.8, -0.2, 0.5, 0.0, 0.7, 0.2, 0.6]])
    # sorted by hand, similarity(slot): 0.9(1) 0.8(3) 0.7(7) 0.6(9) 0.5(5) 0.3(2) 0.2(8)
    # 0.1(0) 0.0(6) -0.2(4); so ranks 1..10 are slots 1, 3, 7, 9, 5, 2, 8, 0, 6, 4
    hardest_20 = band_mask(l_neg, parse_band("0-20"))  # ranks 1..2
    assert hardest_20 is not None
    assert hardest_20[0].nonzero().ravel().tolist() == [1, 3]
    easiest_80 = band_mask(l_neg, parse_band("20-100"))  # ranks 3..10
    assert easiest_80 is not None
    assert sorted(easiest_80[0].nonzero().ravel().tolist()) == [0, 2, 4, 5, 6, 7, 8, 9]
    middle = band_mask(l_neg, parse_band("20-40,80-90"))  # ranks 3,4 and 9
    assert middle is not None
    assert sorted(middle[0].nonzero().ravel().tolist()) == [6, 7, 9]
    assert band_mask(l_neg, parse_band("0-100")) is None


specs = st.sampled_from(["0-5", "5-100", "0.1-100", "0-5,50-55", "10-20,30-35", "1-99", "0-50"])


@settings(max_examples=60, deadline=None)
@given(k=st.integers(16, 600), n=st.integers(1, 6), spec=specs, seed=st.integers(0, 2**31))
def test_band_mask_keeps_exact_documented_ranks(k: int, n: int, spec: str, seed: int) -> None:
    band = parse_band(spec)
    if band.kept_count(k) == 0:
        return
    g = torch.Generator().manual_seed(seed)
    l_neg = torch.rand(n, k, generator=g) * 2 - 1  # (n, K), distinct with probability 1
    mask = band_mask(l_neg, band)
    ranks = torch.as_tensor(ranks_from_order(rank_order(l_neg.numpy())))  # slow reference
    expect = torch.zeros(n, k, dtype=torch.bool)
    for lo, hi in band.rank_intervals(k):
        expect |= (ranks > lo) & (ranks <= hi)
    if mask is None:
        assert expect.all()
        return
    assert torch.equal(mask, expect)
    assert (mask.sum(1) == band.kept_count(k)).all()


@settings(max_examples=30, deadline=None)
@given(k=st.integers(16, 600), pct=st.sampled_from([1, 5, 12.5, 50]), seed=st.integers(0, 99))
def test_random_band_keeps_exact_count(k: int, pct: float, seed: int) -> None:
    band = parse_band(f"random:{pct}")
    l_neg = torch.rand(4, k)
    mask = band_mask(l_neg, band, torch.Generator().manual_seed(seed))
    assert mask is not None
    assert (mask.sum(1) == math.ceil(pct * k / 100)).all()


@settings(max_examples=30, deadline=None)
@given(
    k=st.integers(16, 600),
    spec=st.sampled_from(["5-100", "0.1-100", "50-55", "0-5,50-55", "20-40,80-90"]),
    seed=st.integers(0, 99),
)
def test_count_matched_random_band_keeps_the_bands_count(k: int, spec: str, seed: int) -> None:
    band = parse_band(f"random={spec}")
    l_neg = torch.rand(6, k)
    mask = band_mask(l_neg, band, torch.Generator().manual_seed(seed))
    assert mask is not None
    ranked = band_mask(l_neg, parse_band(spec))
    expect = k if ranked is None else ranked.sum(1)
    assert (mask.sum(1) == expect).all()  # as many as the rank band keeps, for every query...
    if 0 < parse_band(spec).kept_count(k) < k:  # ...but not the same negatives for each query
        assert not (mask == mask[0]).all()


def test_random_band_is_uniform_and_seeded() -> None:
    band = parse_band("random:10")
    l_neg = torch.linspace(-1, 1, 200).repeat(2000, 1)  # hardness fixed: the mask must ignore it
    mask = band_mask(l_neg, band, torch.Generator().manual_seed(0))
    assert mask is not None
    freq = mask.float().mean(0)  # per-slot keep rate, expected 0.1
    assert abs(float(freq.mean()) - 0.1) < 1e-6
    # hardest 20 slots are kept as often as the easiest 20 (within sampling noise)
    assert abs(float(freq[-20:].mean() - freq[:20].mean())) < 0.02
    again = band_mask(l_neg, band, torch.Generator().manual_seed(0))
    assert again is not None and torch.equal(mask, again)


def test_info_nce_matches_manual_and_masks_negatives() -> None:
    l_pos = torch.tensor([0.5, 0.1])
    l_neg = torch.tensor([[0.2, 0.4, -0.1], [0.3, 0.0, 0.9]])
    t = 0.1
    # manual: -log(exp(p/t) / (exp(p/t) + sum exp(n/t)))
    manual = torch.stack(
        [
            -(l_pos[i] / t) + torch.logsumexp(torch.cat([l_pos[i : i + 1], l_neg[i]]) / t, 0)
            for i in range(2)
        ]
    )
    assert torch.allclose(info_nce(l_pos, l_neg, t, None), manual)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    masked = torch.stack(
        [
            -(l_pos[i] / t)
            + torch.logsumexp(torch.cat([l_pos[i : i + 1], l_neg[i][mask[i]]]) / t, 0)
            for i in range(2)
        ]
    )
    assert torch.allclose(info_nce(l_pos, l_neg, t, mask), masked)


def test_similarities_are_cosines() -> None:
    g = torch.Generator().manual_seed(1)
    q = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    k = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    queue = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    l_pos, l_neg = similarities(q, k, queue)
    assert l_pos.shape == (4,) and l_neg.shape == (4, 6)
    assert torch.allclose(l_pos, F.cosine_similarity(q, k))
    assert torch.allclose(l_neg[2, 3], F.cosine_similarity(q[2:3], queue[3:4])[0])


def test_rank_order_permutation_and_rank_one_is_most_similar() -> None:
    rng = np.random.default_rng(0)
    sims = rng.standard_normal((50, 300)).astype(np.float32)
    order = rank_order(sims)
    ranks = ranks_from_order(order)
    assert (np.sort(ranks, axis=1) == np.arange(1, 301)).all()
    sorted_sims = np.take_along_axis(sims, order, axis=1)
    assert (np.diff(sorted_sims, axis=1) <= 0).all()
    assert (sims[np.arange(50), order[:, 0]] == sims.max(axis=1)).all()


@pytest.mark.parametrize("n", [1, 3])
def test_band_mask_on_float16_logits_counts(n: int) -> None:
    # ties are possible in low precision; counts must stay exact
    l_neg = torch.round(torch.rand(n, 64) * 4) / 4  # many ties
    mask = band_mask(l_neg, parse_band("0-25"))
    assert mask is not None and (mask.sum(1) == 16).all()
    mask = band_mask(l_neg, parse_band("25-100"))
    assert mask is not None and (mask.sum(1) == 48).all()
