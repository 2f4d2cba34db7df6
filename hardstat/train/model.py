"""MoCo v2 (Chen et al. 2020) with a provenance-carrying queue and band-restricted negatives.

``MoCo.forward`` follows the reference pseudo-code line by line (q, k, l_pos, l_neg, logits / T,
labels = 0), with one addition: negatives outside the configured band leave the softmax
denominator. Everything is device-agnostic. In one process the BatchNorm shuffle of multi-GPU
MoCo is emulated by SplitBatchNorm plus a shuffle of the key batch (as in MoCo's CIFAR demo);
under torchrun the key batch is shuffled across processes and the queue takes every process's
keys, exactly as MoCo's ``_batch_shuffle_ddp`` and ``concat_all_gather`` do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from hardstat.bands import Band
from hardstat.train import distributed
from hardstat.train.negatives import band_mask, info_nce, similarities
from hardstat.train.queue import KeyQueue


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm over ``num_splits`` sub-batches in training: the statistics of multi-GPU BN.

    Sub-batch j holds samples j, j + s, j + 2s, ... of the batch (s = ``num_splits``), as in
    MoCo's CIFAR demo; the running statistics move towards the mean over sub-batches."""

    def __init__(self, num_features: int, num_splits: int, **kw: object) -> None:
        super().__init__(num_features, **kw)  # type: ignore[arg-type]
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if not self.training or self.num_splits == 1:
            return super().forward(x)
        s = self.num_splits
        assert self.running_mean is not None and self.running_var is not None
        running_mean = self.running_mean.repeat(s)
        running_var = self.running_var.repeat(s)
        out = F.batch_norm(
            x.reshape(n // s, c * s, h, w),
            running_mean,
            running_var,
            self.weight.repeat(s),
            self.bias.repeat(s),
            True,
            self.momentum if self.momentum is not None else 0.1,
            self.eps,
        ).reshape(n, c, h, w)
        self.running_mean.copy_(running_mean.view(s, c).mean(dim=0))
        self.running_var.copy_(running_var.view(s, c).mean(dim=0))
        return out


class ConvNet(nn.Module):
    """A small CPU-friendly backbone: three 3x3 conv + BN + ReLU blocks, global average pool."""

    def __init__(self, width: int, norm_layer: Callable[[int], nn.Module]) -> None:
        super().__init__()
        w = width

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), norm_layer(c_out), nn.ReLU()]

        self.net = nn.Sequential(
            *block(3, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = 4 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_backbone(name: str, width: int, bn_splits: int) -> tuple[nn.Module, int]:
    """A backbone mapping images (N, 3, H, W) to features (N, F), and F."""
    norm = partial(SplitBatchNorm, num_splits=bn_splits)
    if name == "convnet":
        net = ConvNet(width, norm)
        return net, net.out_dim
    if name == "resnet18":
        r = torchvision.models.resnet18(weights=None, norm_layer=norm)
        r.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # CIFAR stem: 3x3, stride 1, no max-pool
        r.maxpool = nn.Identity()
    elif name == "resnet50":
        r = torchvision.models.resnet50(weights=None, norm_layer=norm)
    else:
        raise ValueError(f"unknown backbone {name!r}")
    out_dim = r.fc.in_features
    r.fc = nn.Identity()
    return r, out_dim


class Encoder(nn.Module):
    """Backbone plus the MoCo v2 two-layer MLP projection head."""

    def __init__(self, backbone: str, width: int, dim: int, bn_splits: int) -> None:
        super().__init__()
        self.backbone, feat = build_backbone(backbone, width, bn_splits)
        self.head = nn.Sequential(nn.Linear(feat, feat), nn.ReLU(), nn.Linear(feat, dim))
        self.feature_dim = feat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone(x)), dim=1)  # (N, dim), unit norm


@dataclass
class StepOutput:
    """What one MoCo step computed, for the optimizer and the rank logger.

    Tensors describe the first direction (query view 1, key view 2) and the queue *as the loss
    saw it*, before this step's keys were enqueued.
    """

    loss: torch.Tensor  # () mean loss (summed over both directions if symmetric)
    losses: torch.Tensor  # (N,) per-query loss, first direction
    l_pos: torch.Tensor  # (N,) positive similarities
    l_neg: torch.Tensor  # (N, K) negative similarities
    mask: torch.Tensor | None  # (N, K) negatives kept by the band, None = all
    neg_ids: torch.Tensor  # (K,) sample_id of each queue slot (-1 = random initial key)
    neg_key_steps: torch.Tensor  # (K,) step that enqueued each slot's key (-1 = random initial)


class MoCo(nn.Module):
    """MoCo v2: query encoder, momentum key encoder, queue of K negatives, temperature T."""

    def __init__(
        self,
        backbone: str = "resnet18",
        width: int = 32,
        dim: int = 128,
        queue_size: int = 4096,
        momentum: float = 0.99,
        temperature: float = 0.1,
        bn_splits: int = 8,
        symmetric: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.m, self.T, self.symmetric = momentum, temperature, symmetric
        self.encoder_q = Encoder(backbone, width, dim, bn_splits)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad = False
        self.queue = KeyQueue(queue_size, dim, generator=generator)

    @torch.no_grad()
    def momentum_update(self) -> None:
        for p_q, p_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True):
            p_k.mul_(self.m).add_(p_q.detach(), alpha=1 - self.m)

    @torch.no_grad()
    def keys(
        self, im_k: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys of this process's images (N, C) and of all P processes' images (P*N, C), in
        process order, computed with the batch shuffled through BatchNorm, then unshuffled."""
        if not distributed.active():
            idx = torch.randperm(im_k.shape[0], generator=generator, device=im_k.device)  # (N,)
            k = self.encoder_k(im_k[idx])  # (N, C), shuffled
            k = k[torch.argsort(idx)]  # (N, C), original order
            return k, k
        n, p = im_k.shape[0], torch.distributed.get_rank()
        x_all = distributed.concat_all_gather(im_k)  # (P*N, 3, H, W): the global batch
        if p == 0:
            idx = torch.randperm(x_all.shape[0], generator=generator, device=im_k.device)
        else:
            idx = torch.empty(x_all.shape[0], dtype=torch.long, device=im_k.device)
        distributed.broadcast_(idx)  # (P*N,): one shuffle, the same on every process
        k_share = self.encoder_k(x_all[idx[p * n : (p + 1) * n]])  # (N, C), a shuffled share
        k_all = distributed.concat_all_gather(k_share)[torch.argsort(idx)]  # (P*N, C), unshuffled
        return k_all[p * n : (p + 1) * n], k_all

    def contrast(
        self, im_q: torch.Tensor, im_k: torch.Tensor, band: Band, generator: torch.Generator | None
    ) -> tuple[StepOutput, torch.Tensor]:
        q = self.encoder_q(im_q)  # queries: (N, C)
        k, k_all = self.keys(im_k, generator)  # keys: (N, C), every process's: (P*N, C)
        l_pos, l_neg = similarities(q, k, self.queue.keys.clone())  # (N,), (N, K)
        mask = band_mask(l_neg.detach(), band, generator)  # (N, K) or None
        losses = info_nce(l_pos, l_neg, self.T, mask)  # (N,)
        out = StepOutput(
            losses.mean(),
            losses.detach(),
            l_pos.detach(),
            l_neg.detach(),
            mask,
            self.queue.sample_ids.clone(),
            self.queue.steps.clone(),
        )
        return out, k_all

    def forward(
        self,
        im_1: torch.Tensor,
        im_2: torch.Tensor,
        sample_ids: torch.Tensor,
        labels: torch.Tensor,
        step: int,
        band: Band,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """One MoCo step: momentum update, loss over banded negatives, enqueue the new keys.

        Under torchrun each process passes its share of the global batch; the queue receives
        the keys, sample ids and labels of the whole global batch, in process order.
        """
        self.momentum_update()
        ids_all = distributed.concat_all_gather(sample_ids)  # (P*N,)
        labels_all = distributed.concat_all_gather(labels)  # (P*N,)
        out, k2 = self.contrast(im_1, im_2, band, generator)  # k2: (P*N, C)
        if self.symmetric:
            out_21, k1 = self.contrast(im_2, im_1, band, generator)
            out.loss = out.loss + out_21.loss
            self.queue.enqueue(torch.cat([k2, k1]), ids_all.repeat(2), labels_all.repeat(2), step)
        else:
            self.queue.enqueue(k2, ids_all, labels_all, step)
        return out
