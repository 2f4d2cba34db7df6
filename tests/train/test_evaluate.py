"""The kNN monitor and the linear probe against slow explicit loops on tiny feature sets."""

import math

import pytest

torch = pytest.importorskip("torch")

from hardstat.train.evaluate import (  # noqa: E402
    LinearProbe,
    knn_eval,
    knn_scores,
    linear_probe,
    topk_accuracy,
)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def _tiny_features(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    centers = _unit(torch.randn(6, 8, generator=g))  # 6 classes in 8 dimensions
    y_bank = torch.arange(30) % 6
    y_test = torch.arange(12) % 6
    bank = _unit(centers[y_bank] + 0.6 * torch.randn(30, 8, generator=g))
    test = _unit(centers[y_test] + 0.6 * torch.randn(12, 8, generator=g))
    return bank, y_bank, test, y_test


def _slow_knn_scores(
    feature: list[float], bank: list[list[float]], labels: list[int], classes: int, k: int, t: float
) -> list[float]:
    """Wu et al. 2018, one test feature at a time: the k most similar bank features each add
    exp(similarity / t) to their class."""
    sims = [
        (sum(a * b for a, b in zip(feature, row, strict=True)), j) for j, row in enumerate(bank)
    ]
    sims.sort(key=lambda pair: -pair[0])
    scores = [0.0] * classes
    for sim, j in sims[:k]:
        scores[labels[j]] += math.exp(sim / t)
    return scores


@pytest.mark.parametrize("k", [1, 5, 30, 100])  # 100 > bank size: all of the bank votes
def test_knn_scores_match_a_slow_loop(k: int) -> None:
    bank, y_bank, test, _ = _tiny_features()
    fast = knn_scores(test, bank, y_bank, 6, k=k, t=0.1)  # (12, 6)
    for i in range(test.shape[0]):
        slow = _slow_knn_scores(test[i].tolist(), bank.tolist(), y_bank.tolist(), 6, k, 0.1)
        assert fast[i].tolist() == pytest.approx(slow, rel=1e-4)


def test_knn_eval_accuracy_matches_a_slow_loop_over_chunks() -> None:
    bank, y_bank, test, y_test = _tiny_features(1)
    hits1 = hits5 = 0
    for i in range(test.shape[0]):
        scores = _slow_knn_scores(test[i].tolist(), bank.tolist(), y_bank.tolist(), 6, 7, 0.1)
        ranked = sorted(range(6), key=lambda c: -scores[c])
        hits1 += ranked[0] == int(y_test[i])
        hits5 += int(y_test[i]) in ranked[:5]
    top1, top5 = knn_eval(bank, y_bank, test, y_test, 6, k=7, t=0.1, chunk=5)  # 3 chunks
    assert (top1, top5) == pytest.approx((hits1 / 12, hits5 / 12))


def test_topk_accuracy_by_hand() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    top1, top5 = topk_accuracy(scores, torch.tensor([1, 2, 2]))
    assert top1 == pytest.approx(2 / 3) and top5 is None  # fewer than 5 classes: no top-5


def _slow_fit_linear(
    x: list[list[float]],
    y: list[int],
    classes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> tuple[list[list[float]], list[float]]:
    """Standardize, then mini-batch SGD (momentum 0.9, cosine per epoch) on softmax
    cross-entropy, gradients written out by hand; the same draws from ``seed`` as the probe:
    weights, bias, then one permutation per epoch."""
    n, d = len(x), len(x[0])
    mean = [sum(row[j] for row in x) / n for j in range(d)]
    std = [
        max(math.sqrt(sum((row[j] - mean[j]) ** 2 for row in x) / (n - 1)), 1e-6) for j in range(d)
    ]
    xs = [[(row[j] - mean[j]) / std[j] for j in range(d)] for row in x]
    gen = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(d)
    w = torch.empty(classes, d).uniform_(-bound, bound, generator=gen).tolist()
    b = torch.empty(classes).uniform_(-bound, bound, generator=gen).tolist()
    vw = [[0.0] * d for _ in range(classes)]
    vb = [0.0] * classes
    for epoch in range(epochs):
        rate = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        perm = torch.randperm(n, generator=gen).tolist()
        for start in range(0, n, batch_size):
            batch = perm[start : start + batch_size]
            gw = [[0.0] * d for _ in range(classes)]
            gb = [0.0] * classes
            for i in batch:
                logits = [sum(w[c][j] * xs[i][j] for j in range(d)) + b[c] for c in range(classes)]
                top = max(logits)
                exp = [math.exp(v - top) for v in logits]
                total = sum(exp)
                for c in range(classes):
                    g = exp[c] / total - (1.0 if c == y[i] else 0.0)  # d loss / d logit
                    gb[c] += g / len(batch)
                    for j in range(d):
                        gw[c][j] += g * xs[i][j] / len(batch)
            for c in range(classes):
                vb[c] = 0.9 * vb[c] + gb[c] if epoch or start else gb[c]
                b[c] -= rate * vb[c]
                for j in range(d):
                    vw[c][j] = 0.9 * vw[c][j] + gw[c][j] if epoch or start else gw[c][j]
                    w[c][j] -= rate * vw[c][j]
    return w, b


def test_linear_probe_fit_matches_a_slow_loop() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(10, 3, generator=g) * torch.tensor([1.0, 5.0, 0.2]) + 2.0  # 10 samples
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    clf, mean, std = LinearProbe(epochs=3, lr=0.5, seed=7, batch_size=4).fit(x, y, 3)
    w, b = _slow_fit_linear(x.tolist(), y.tolist(), 3, epochs=3, lr=0.5, batch_size=4, seed=7)
    assert torch.allclose(mean, x.mean(0)) and torch.allclose(std, x.std(0))
    assert clf.weight.detach().tolist() == [pytest.approx(row, abs=1e-4) for row in w]
    assert clf.bias.detach().tolist() == pytest.approx(b, abs=1e-4)


def test_linear_probe_separates_planted_classes_and_is_seeded() -> None:
    bank, y_bank, test, y_test = _tiny_features(2)
    torch.manual_seed(1)  # the global generator must not matter: only ``seed`` does
    a = linear_probe(bank, y_bank, test, y_test, 6, epochs=10, lr=0.1, batch_size=8, seed=5)
    torch.manual_seed(2)
    b = linear_probe(bank, y_bank, test, y_test, 6, epochs=10, lr=0.1, batch_size=8, seed=5)
    assert a == b
    assert a[0] >= 0.75  # well-separated planted classes (chance: 1/6)
