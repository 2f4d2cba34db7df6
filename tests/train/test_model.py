"""MoCo's building blocks on tiny tensors: the momentum update of the key encoder, split
BatchNorm against a slow per-chunk loop, and the single-process key shuffle."""

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from hardstat.train.model import MoCo, SplitBatchNorm  # noqa: E402


def tiny_moco(momentum: float = 0.99, bn_splits: int = 2) -> MoCo:
    torch.manual_seed(0)
    return MoCo(
        backbone="convnet",
        width=2,
        dim=4,
        queue_size=8,
        momentum=momentum,
        bn_splits=bn_splits,
        generator=torch.Generator().manual_seed(0),
    )


# --- momentum update --------------------------------------------------------------------------


def test_momentum_update_by_hand() -> None:
    """key <- m * key + (1 - m) * query, parameter by parameter; m = 0.9, query 1, key 3:
    0.9 * 3 + 0.1 * 1 = 2.8 (a swapped m would give 1.2)."""
    moco = tiny_moco(momentum=0.9)
    with torch.no_grad():
        for p in moco.encoder_q.parameters():
            p.fill_(1.0)
        for p in moco.encoder_k.parameters():
            p.fill_(3.0)
    buffers = {n: b.clone() for n, b in moco.encoder_k.named_buffers()}
    moco.momentum_update()
    for p in moco.encoder_k.parameters():
        assert torch.allclose(p, torch.full_like(p, 2.8))
    for p in moco.encoder_q.parameters():  # the query encoder is not touched
        assert torch.equal(p, torch.ones_like(p))
    for n, b in moco.encoder_k.named_buffers():  # BatchNorm statistics are not averaged
        assert torch.equal(b, buffers[n])


def test_momentum_update_on_random_weights_and_twice() -> None:
    moco = tiny_moco(momentum=0.99)
    with torch.no_grad():
        for p in moco.encoder_k.parameters():
            p.normal_()
    q = [p.detach().clone() for p in moco.encoder_q.parameters()]
    k0 = [p.detach().clone() for p in moco.encoder_k.parameters()]
    moco.momentum_update()
    moco.momentum_update()
    for p, pq, pk in zip(moco.encoder_k.parameters(), q, k0, strict=True):
        # two steps towards a fixed query: k2 = m^2 k0 + (1 - m^2) q
        expect = 0.99**2 * pk + (1 - 0.99**2) * pq
        assert torch.allclose(p, expect, atol=1e-6)
    assert all(not p.requires_grad for p in moco.encoder_k.parameters())


# --- split BatchNorm ----------------------------------------------------------------------------


def slow_split_batch_norm(
    x: torch.Tensor, splits: int, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """BatchNorm in training mode, one sub-batch and one channel at a time: sub-batch j holds
    samples j, j + splits, j + 2 splits, ...; (x - mean) / sqrt(biased var + eps) * weight + bias
    over (samples, height, width)."""
    out = torch.empty_like(x)
    for j in range(splits):
        for ch in range(x.shape[1]):
            values = x[j::splits, ch]  # (N/splits, H, W)
            mean = values.mean()
            var = ((values - mean) ** 2).mean()
            normed = (values - mean) / torch.sqrt(var + eps)
            out[j::splits, ch] = normed * weight[ch] + bias[ch]
    return out


@pytest.mark.parametrize("splits", [1, 2, 4])
def test_split_batch_norm_normalises_each_chunk_on_its_own(splits: int) -> None:
    g = torch.Generator().manual_seed(splits)
    x = torch.randn(8, 3, 2, 2, generator=g) * torch.tensor([1.0, 4.0, 0.5]).view(1, 3, 1, 1)
    x = x + torch.arange(8.0).view(8, 1, 1, 1)  # sub-batches differ in mean: pooling shows
    bn = SplitBatchNorm(3, splits)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    out = bn(x)
    expect = slow_split_batch_norm(x, splits, bn.weight.detach(), bn.bias.detach(), bn.eps)
    assert torch.allclose(out, expect, atol=1e-5)


def test_split_batch_norm_running_statistics_average_the_chunks() -> None:
    """Running mean / var move towards the mean over chunks of each chunk's mean and unbiased
    variance (as multi-GPU BN averages the processes' statistics)."""
    x = torch.randn(8, 2, 3, 3, generator=torch.Generator().manual_seed(0)) + 5.0
    bn = SplitBatchNorm(2, 4, momentum=0.1)
    bn(x)
    groups = torch.stack([x[j::4] for j in range(4)])  # (splits, N/splits, C, H, W)
    means = groups.mean(dim=(1, 3, 4))  # (splits, C)
    variances = groups.transpose(1, 2).reshape(4, 2, -1).var(dim=2)  # unbiased: (splits, C)
    assert torch.allclose(bn.running_mean, 0.9 * 0 + 0.1 * means.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, 0.9 * 1 + 0.1 * variances.mean(0), atol=1e-5)


def test_split_batch_norm_in_eval_mode_is_plain_batch_norm() -> None:
    x = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    split, plain = SplitBatchNorm(3, 2), nn.BatchNorm2d(3)
    for bn in (split, plain):
        bn.running_mean.fill_(0.5)
        bn.running_var.fill_(2.0)
        bn.eval()
    assert torch.allclose(split(x), plain(x))


# --- key shuffle (one process) ------------------------------------------------------------------


def test_key_shuffle_is_undone_in_eval_mode() -> None:
    """With BatchNorm on running statistics each key depends on its own image only, so the
    shuffle and its inverse leave every key where it was: keys(im) equals encoder_k(im)."""
    moco = tiny_moco(bn_splits=2)
    moco.eval()
    im = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    k, k_all = moco.keys(im, g)
    with torch.no_grad():
        expect = moco.encoder_k(im)
    assert torch.allclose(k, expect, atol=1e-6)
    assert k_all is k  # one process: every process's keys are this process's
    assert not torch.equal(g.get_state(), torch.Generator().manual_seed(3).get_state())  # drawn


def test_key_shuffle_with_one_batch_norm_group_changes_nothing() -> None:
    """BatchNorm over the whole batch does not depend on the order: training-mode keys also
    equal encoder_k(im) (a missing unshuffle would permute the rows)."""
    moco = tiny_moco(bn_splits=1)
    im = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    k, _ = moco.keys(im, torch.Generator().manual_seed(5))
    with torch.no_grad():
        expect = moco.encoder_k(im)
    assert torch.allclose(k, expect, atol=1e-5)


def test_key_shuffle_groups_images_by_the_drawn_permutation() -> None:
    """With split BatchNorm a key depends on the images it was normalised with: those at the
    shuffled positions of one sub-batch (every other one for 2 groups), each key returned in
    its image's original row."""
    moco = tiny_moco(bn_splits=2)
    im = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    k, _ = moco.keys(im, torch.Generator().manual_seed(7))
    idx = torch.randperm(6, generator=torch.Generator().manual_seed(7))  # the same draw
    single = tiny_moco(bn_splits=1)  # to normalise one chunk on its own
    single.encoder_k.load_state_dict(moco.encoder_k.state_dict())
    with torch.no_grad():
        for group in (idx[0::2], idx[1::2]):  # the images at shuffled positions 0, 2, 4; 1, 3, 5
            assert torch.allclose(k[group], single.encoder_k(im[group]), atol=1e-5)
    perm_inverse = torch.argsort(idx)
    assert torch.equal(idx[perm_inverse], torch.arange(6))
