"""SimCLR in plain PyTorch, instrumented with hardstat's recorder (in-batch negatives).

Each of a batch's B images gives two augmented views; a view's positive is the other view of its
image and its negatives are the 2B - 2 views of the other images (NT-Xent, Chen et al. 2020).
The recorder logs, at every ``--every``-th step, ``--queries`` of the view-1 queries with the
similarity and rank of each of their 2B - 2 negatives, so the hardstat analyses run on the log:

    python examples/simclr.py --out runs/simclr --epochs 10          # the 2,000 demo images
    hardstat analyze semantic runs/simclr
    hardstat analyze consistency runs/simclr --band 0-5
    hardstat report runs/simclr --out simclr.html

``--band 0-5`` trains on the hardest 5% of each query's in-batch negatives only (two lines:
``band_mask`` and ``info_nce``). ``--data synthetic:256`` uses generated images (seconds);
``--data npz:DIR`` a folder with train.npz (and test.npz): ``images`` uint8 N x H x W x 3,
``labels``. The run directory is printed on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hardstat.classes import CIFAR10_CLASSES
from hardstat.data import DEMO_DIR
from hardstat.negatives import band_mask, info_nce, nt_xent_similarities, parse_band
from hardstat.record import Recorder
from hardstat.train.evaluate import knn_eval


def load(
    spec: str, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Train images (N, H, W, 3) uint8 and labels (N,), test images and labels (or None)."""
    if spec.startswith("synthetic"):
        from hardstat.train.data import synthetic_images  # hardstat's generated test images

        n = int(spec.split(":", 1)[1]) if ":" in spec else 512
        (x, y), (xt, yt) = (
            synthetic_images(n, seed=seed),
            synthetic_images(n // 2, seed=seed, stream=1),
        )
        return x.transpose(0, 2, 3, 1), y, xt.transpose(0, 2, 3, 1), yt
    folder = DEMO_DIR if spec == "demo" else Path(spec.removeprefix("npz:"))
    with np.load(folder / "train.npz") as d:
        x, y = d["images"], d["labels"]
    if not (folder / "test.npz").is_file():
        return x, y, None, None
    with np.load(folder / "test.npz") as d:
        return x, y, d["images"], d["labels"]


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random view of each image of x (B, 3, H, W) in [0, 1]: resized crop (area 0.2-1),
    horizontal flip, colour jitter (p = 0.8), grayscale (p = 0.2), then normalisation."""
    b = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.empty(b, device=x.device).uniform_(lo, hi, generator=g)

    side = u(0.2, 1.0).sqrt()  # (B,) crop side as a fraction of the image
    flip = torch.where(u(0, 1) < 0.5, -1.0, 1.0)  # (B,)
    theta = torch.zeros(b, 2, 3, device=x.device)  # (B, 2, 3) affine crop
    theta[:, 0, 0], theta[:, 1, 1] = side * flip, side
    theta[:, 0, 2], theta[:, 1, 2] = u(-1, 1) * (1 - side), u(-1, 1) * (1 - side)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False)  # (B, 3, H, W)
    jitter = (u(0, 1) < 0.8)[:, None, None, None]  # (B, 1, 1, 1)
    grey = x.mean(1, keepdim=True)  # (B, 1, H, W)
    mean = x.mean((1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    bright, contrast, sat = (u(0.6, 1.4)[:, None, None, None] for _ in range(3))
    jittered = ((grey + sat * (x - grey)) * bright - mean) * contrast + mean
    x = torch.where(jitter, jittered, x).clamp(0, 1)
    x = torch.where((u(0, 1) < 0.2)[:, None, None, None], x.mean(1, keepdim=True).expand_as(x), x)
    return (x - 0.45) / 0.25


class Encoder(nn.Module):
    """A small ConvNet backbone and SimCLR's two-layer projection head; unit-norm output."""

    def __init__(self, width: int = 32, dim: int = 64) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]

        w = width
        self.backbone = nn.Sequential(
            *block(3, w), nn.MaxPool2d(2), *block(w, 2 * w), nn.MaxPool2d(2), *block(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Linear(4 * w, 4 * w), nn.ReLU(), nn.Linear(4 * w, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone(x)), dim=1)  # (B, dim)


@torch.no_grad()
def features(model: Encoder, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    model.eval()
    out = [
        F.normalize(model.backbone((images[i : i + 512].to(device) - 0.45) / 0.25), dim=1).cpu()
        for i in range(0, len(images), 512)
    ]
    model.train()
    return torch.cat(out)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="demo", help="demo, synthetic[:N] or npz:DIR")
    p.add_argument("--out", type=Path, default=Path("runs/simclr"), help="run directory")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=0.06)
    p.add_argument("--band", default="0-100", help="negatives the loss uses, e.g. 0-5, random:5")
    p.add_argument("--every", type=int, default=5, help="log pairs every N steps")
    p.add_argument("--queries", type=int, default=64, help="queries per logged step (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    device, b, t = torch.device(args.device), args.batch_size, args.temperature
    band = parse_band(args.band)
    x, y, xt, yt = load(args.data, args.seed)
    images = torch.as_tensor(x).permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W); sample_id = row
    model = Encoder().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator(device=device).manual_seed(args.seed)
    steps_per_epoch = len(images) // b  # whole batches only: K = 2B - 2 for every step
    recorder = Recorder.create(
        args.out,
        negatives="in_batch",
        negatives_per_query=2 * b - 2,
        train_labels=y,
        test_labels=yt,
        classes=CIFAR10_CLASSES,  # the demo and synthetic data use CIFAR-10's classes
        dataset=args.data,
        image_size=images.shape[-1],
        seed=args.seed,
        every=args.every,
        queries=args.queries,
        band=band,
        config={
            "model": {"backbone": "convnet", "width": 32, "dim": 64},
            "optim": {"batch_size": b, "epochs": args.epochs, "lr": args.lr},
            "temperature": t,
            "trainer": "examples/simclr.py",
        },
    )
    step = 0
    with recorder:
        for epoch in range(args.epochs):
            order = torch.randperm(
                len(images), generator=torch.Generator().manual_seed(args.seed + epoch)
            )
            t0 = time.perf_counter()
            for i in range(steps_per_epoch):
                ids = order[i * b : (i + 1) * b]  # (B,) sample ids of the batch
                batch = images[ids].to(device)
                z1, z2 = model(augment(batch, g)), model(augment(batch, g))  # (B, dim) each
                s = nt_xent_similarities(z1, z2)  # 2B queries, 2B - 2 negatives each
                mask = band_mask(s.l_neg.detach(), band, g)  # None for 0-100
                losses = info_nce(s.l_pos, s.l_neg, t, mask)  # (2B,)
                loss = losses.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                ids_dev = ids.to(device)
                recorder.log_step(  # view 1 of each image is the logged query
                    step,
                    epoch=epoch,
                    query_ids=ids_dev,
                    pos_similarity=s.l_pos[:b],
                    neg_similarity=s.l_neg[:b],
                    neg_ids=ids_dev[s.neg_index[:b]],  # (B, 2B - 2)
                    in_band=None if mask is None else mask[:b],
                    losses=losses[:b],
                    loss=loss,
                    lr=args.lr,
                )
                step += 1
            line = (
                f"epoch {epoch}: loss {float(loss.detach()):.3f}, {time.perf_counter() - t0:.1f} s"
            )
            if xt is not None:
                test = torch.as_tensor(xt).permute(0, 3, 1, 2).float() / 255
                top1, top5 = knn_eval(
                    features(model, images, device), torch.as_tensor(y),
                    features(model, test, device), torch.as_tensor(yt), len(CIFAR10_CLASSES), k=20,
                )  # fmt: skip
                recorder.log_eval(
                    step - 1,
                    epoch=epoch,
                    kind="knn",
                    top1=top1,
                    top5=top5,
                    params={"k": 20, "t": 0.1},
                )
                line += f", kNN top-1 {top1:.3f}"
            print(line, file=sys.stderr)
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
