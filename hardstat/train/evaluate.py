"""Downstream evaluation of frozen backbone features: weighted kNN monitor and linear probe.

One path serves the trainer's kNN monitor and ``hardstat eval``: :func:`evaluate_backbone`
extracts a dataset's features once (:func:`dataset_features`) and runs each probe (:class:`Knn`,
:class:`LinearProbe`) on them, returning one :class:`EvalResult` (an ``evals`` row) per probe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hardstat.train.augment import eval_transform
from hardstat.train.data import Dataset, ImageSplit


@dataclass(frozen=True)
class EvalResult:
    """One downstream evaluation: an ``evals`` row without the run name."""

    kind: str
    step: int
    epoch: int
    top1: float
    top5: float | None
    params: dict[str, object]


@dataclass(frozen=True)
class Features:
    """L2-normalized backbone features of a dataset's two splits: train (N, F) and test (M, F)."""

    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int


@dataclass(frozen=True)
class Knn:
    """The weighted kNN monitor: test features vote by their ``k`` nearest train features."""

    k: int = 200
    t: float = 0.1
    kind: ClassVar[str] = "knn"

    def params(self) -> dict[str, object]:
        return {"k": self.k, "t": self.t, "bank": "train"}

    def __call__(self, f: Features) -> tuple[float, float | None]:
        return knn_eval(
            f.train, f.train_labels, f.test, f.test_labels, f.num_classes, k=self.k, t=self.t
        )


@dataclass(frozen=True)
class LinearProbe:
    """A linear classifier of the standardized train features, trained with SGD (momentum 0.9)
    and a cosine schedule over ``epochs`` passes; its initial weights and mini-batch order are
    drawn from ``seed`` alone."""

    epochs: int = 100
    lr: float = 0.1
    seed: int = 0
    batch_size: int = 256
    weight_decay: float = 0.0
    on_epoch: Callable[[int], None] | None = field(default=None, compare=False, repr=False)
    """Called after each epoch n = 1..epochs (progress); no part of the result."""
    kind: ClassVar[str] = "linear"

    def params(self) -> dict[str, object]:
        return {
            "epochs": self.epochs,
            "lr": self.lr,
            "optimizer": "sgd-cosine",
            "features": "backbone, standardized",
        }

    def __call__(self, f: Features) -> tuple[float, float | None]:
        clf, mean, std = self.fit(f.train, f.train_labels, f.num_classes)
        with torch.no_grad():
            return topk_accuracy(clf((f.test - mean) / std), f.test_labels)

    def fit(
        self, train_feats: torch.Tensor, train_labels: torch.Tensor, num_classes: int
    ) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
        """The classifier, and the standardization: ``clf((x - mean) / std)`` are logits."""
        gen = torch.Generator().manual_seed(self.seed)
        mean, std = train_feats.mean(0), train_feats.std(0).clamp_min(1e-6)
        x_train = (train_feats - mean) / std
        clf = nn.Linear(x_train.shape[1], num_classes)
        bound = 1 / math.sqrt(x_train.shape[1])  # nn.Linear's own init, drawn from the seed
        with torch.no_grad():
            clf.weight.uniform_(-bound, bound, generator=gen)
            clf.bias.uniform_(-bound, bound, generator=gen)
        opt = torch.optim.SGD(
            clf.parameters(), lr=self.lr, momentum=0.9, weight_decay=self.weight_decay
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        n = x_train.shape[0]
        for epoch in range(self.epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, self.batch_size):
                idx = perm[i : i + self.batch_size]
                loss = F.cross_entropy(clf(x_train[idx]), train_labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
            if self.on_epoch is not None:
                self.on_epoch(epoch + 1)
        return clf, mean, std


def dataset_features(backbone: nn.Module, dataset: Dataset, device: torch.device) -> Features:
    """The backbone's features of both splits of ``dataset`` (which must have a test split),
    through the evaluation transform (resize, normalize)."""
    if dataset.test is None:
        raise ValueError(f"dataset {dataset.spec} has no test split")

    def tf(images: torch.Tensor) -> torch.Tensor:
        return eval_transform(images, dataset.train.image_size, dataset.mean, dataset.std)

    x_train, y_train = extract_features(backbone, dataset.train, tf, device)
    x_test, y_test = extract_features(backbone, dataset.test, tf, device)
    return Features(x_train, y_train, x_test, y_test, len(dataset.classes))


def evaluate_backbone(
    backbone: nn.Module,
    dataset: Dataset,
    device: torch.device,
    probes: Sequence[Knn | LinearProbe],
    *,
    step: int,
    epoch: int,
    say: Callable[[str], None] | None = None,
) -> list[EvalResult]:
    """Run each probe on the backbone's features of ``dataset``: one result per probe, in order.

    ``step`` is the last optimizer step completed before the evaluation, ``epoch`` the epoch
    just completed (the ``evals`` columns); ``say`` receives progress lines."""
    if say is not None and dataset.test is not None:
        say(f"features of {len(dataset.train):,} train and {len(dataset.test):,} test images")
    features = dataset_features(backbone, dataset, device)
    results = []
    for probe in probes:
        top1, top5 = probe(features)
        results.append(EvalResult(probe.kind, step, epoch, top1, top5, probe.params()))
    return results


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    split: ImageSplit,
    transform: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalized backbone features (N, F) and labels (N,) of a whole split, in eval mode."""
    was_training = backbone.training
    backbone.eval()
    feats, n = [], len(split)
    for start in range(0, n, batch_size):
        index = np.arange(start, min(start + batch_size, n))
        images = split.get_batch(index).to(device, non_blocking=True)  # (B, 3, S, S) uint8
        feats.append(F.normalize(backbone(transform(images)).float(), dim=1).cpu())  # (B, F)
    backbone.train(was_training)
    return torch.cat(feats), torch.as_tensor(split.labels, dtype=torch.long)


def knn_scores(
    features: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int,
    t: float,
) -> torch.Tensor:
    """Weighted kNN class scores (Wu et al. 2018): the k most similar bank features vote with
    weight exp(similarity / t).

    features: (B, F), bank: (N, F), both unit norm; bank_labels: (N,). Returns (B, classes).
    """
    k = min(k, bank.shape[0])
    sim = features @ bank.T  # (B, N)
    sim_k, idx = sim.topk(k, dim=1)  # (B, k)
    labels_k = bank_labels[idx]  # (B, k)
    weights = (sim_k / t).exp()  # (B, k)
    one_hot = F.one_hot(labels_k, num_classes).float()  # (B, k, classes)
    return (one_hot * weights[..., None]).sum(dim=1)  # (B, classes)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, float | None]:
    """Top-1 and top-5 accuracy (top-5 is None with fewer than 5 classes)."""
    top1 = float((scores.argmax(dim=1) == labels).float().mean())
    if scores.shape[1] < 5:
        return top1, None
    top5_idx = scores.topk(5, dim=1).indices  # (B, 5)
    top5 = float((top5_idx == labels[:, None]).any(dim=1).float().mean())
    return top1, top5


def knn_eval(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    t: float = 0.1,
    chunk: int = 1024,
) -> tuple[float, float | None]:
    """kNN monitor accuracy of test features against the train feature bank."""
    scores = torch.cat(
        [
            knn_scores(test_feats[i : i + chunk], train_feats, train_labels, num_classes, k, t)
            for i in range(0, test_feats.shape[0], chunk)
        ]
    )
    return topk_accuracy(scores, test_labels)


def linear_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    epochs: int = 100,
    lr: float = 0.1,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    seed: int = 0,
    on_epoch: Callable[[int], None] | None = None,
) -> tuple[float, float | None]:
    """Train a linear classifier on frozen features (:class:`LinearProbe`), report test
    accuracy (top-1, top-5)."""
    probe = LinearProbe(epochs, lr, seed, batch_size, weight_decay, on_epoch=on_epoch)
    return probe(Features(train_feats, train_labels, test_feats, test_labels, num_classes))
