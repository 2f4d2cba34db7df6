"""Batched MoCo v2 augmentation vs the per-sample PIL torchvision pipeline, same run, same data.

Both sides make two views of every image at 32x32:

* batched: ``MocoV2Augment(32, ...).two_views`` on uint8 (B, 3, 32, 32) batches, ``--threads``
  torch threads (the uint8 NCHW tensor is built once, as a training loop would keep it);
* per-sample: ``Image.fromarray`` then ``Compose([RandomResizedCrop(32, scale=(0.2, 1)),
  RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), RandomGrayscale(0.2),
  RandomHorizontalFlip(), ToTensor(), Normalize])`` twice per image in this one process, and
  ``torch.stack`` per batch (what a DataLoader's collate does).

Images come from ``../shared/data/cifar10/train.npz`` next to the repository (key ``images``,
uint8 N x 32 x 32 x 3), or are random uint8 with a notice when that file is absent. Each side is
timed ``--repeats`` times after one warm-up batch; the median pass is reported. Usage::

    python bench/bench_augment.py --batch 256 --images 4096 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms

from hardstat.train.augment import MocoV2Augment

REPO_ROOT = Path(__file__).resolve().parents[1]
CIFAR10_TRAIN = REPO_ROOT.parent / "shared" / "data" / "cifar10" / "train.npz"
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_images(count: int, seed: int) -> tuple[np.ndarray, str]:
    """uint8 (N, 32, 32, 3) images and a line saying where they came from."""
    if CIFAR10_TRAIN.exists():
        images = np.load(CIFAR10_TRAIN)["images"][:count]
        return np.ascontiguousarray(images), f"CIFAR-10 train ({CIFAR10_TRAIN})"
    print(f"NOTICE: {CIFAR10_TRAIN} not found; using random uint8 images instead")
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    return images, "random uint8 (CIFAR-10 file absent)"


def pil_pipeline() -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(32, scale=(0.2, 1.0)),
            transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            transforms.RandomGrayscale(p=0.2),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )


def run_batched(images: torch.Tensor, batch: int, seed: int) -> None:
    aug = MocoV2Augment(32, CIFAR10_MEAN, CIFAR10_STD)
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, images.shape[0], batch):
        aug.two_views(images[start : start + batch], generator)


def run_pil(images: np.ndarray, batch: int, seed: int) -> None:
    torch.manual_seed(seed)
    transform = pil_pipeline()
    for start in range(0, images.shape[0], batch):
        queries, keys = [], []
        for array in images[start : start + batch]:
            image = Image.fromarray(array)
            queries.append(transform(image))
            keys.append(transform(image))
        torch.stack(queries), torch.stack(keys)


def images_per_second(run: Callable[[], None], count: int, repeats: int) -> float:
    """Median images/s over ``repeats`` timed passes of ``run`` (which handles ``count``)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batch", type=int, default=256, help="images per batch")
    parser.add_argument("--images", type=int, default=4096, help="images per timed pass")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per side (median)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.batch <= 0 or args.images <= 0 or args.threads <= 0 or args.repeats <= 0:
        parser.error("--batch, --images, --threads and --repeats must be positive")

    torch.set_num_threads(args.threads)
    array, source = load_images(args.images, args.seed)
    count = array.shape[0]
    tensor = torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32) uint8

    versions = f"torch {torch.__version__} | torchvision {torchvision.__version__}"
    print(f"machine: {cpu_model()} | {versions} | torch threads {torch.get_num_threads()}")
    print(f"data: {source}, {count} images of 32x32")
    print(
        f"batch {args.batch}, two views per image, images/s = input images per second"
        f" (median of {args.repeats} passes)"
    )

    run_batched(tensor[: args.batch], args.batch, args.seed)  # warm-up
    run_pil(array[: min(args.batch, 64)], args.batch, args.seed)
    batched = images_per_second(
        lambda: run_batched(tensor, args.batch, args.seed), count, args.repeats
    )
    pil = images_per_second(lambda: run_pil(array, args.batch, args.seed), count, args.repeats)

    print(f"{'pipeline':<58}{'images/s':>12}")
    print(f"{f'batched MocoV2Augment.two_views ({args.threads} threads)':<58}{batched:>12,.0f}")
    print(f"{'per-sample PIL torchvision Compose, x2 per image':<58}{pil:>12,.0f}")
    print(f"{'ratio batched / PIL':<58}{batched / pil:>11.1f}x")


if __name__ == "__main__":
    main()
