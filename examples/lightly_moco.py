"""MoCo v2 built on lightly's modules, instrumented with hardstat's recorder (a memory bank).

lightly's pieces: ``MoCoProjectionHead``, ``update_momentum`` and ``cosine_schedule`` for the
key encoder, ``MoCoV2Transform`` for the two views, and ``NTXentLoss`` with a memory bank of K
keys as the loss. The one change for hardstat: the loss's memory bank is an
``IdMemoryBank`` (``hardstat.integrations.lightly``), lightly's bank that also keeps the sample
id and enqueue step of every key, so each logged negative is named:

    pip install "hardstat[lightly]"
    python examples/lightly_moco.py --out runs/lightly-moco --epochs 20   # the 2,000 demo images
    hardstat analyze consistency runs/lightly-moco
    hardstat analyze semantic runs/lightly-moco
    hardstat report runs/lightly-moco --out lightly-moco.html

With ``--band 0-5`` the loss is hardstat's banded InfoNCE over the same memory bank (lightly's
``NTXentLoss`` has no band). ``--subset N`` trains on N of the demo images (sample ids stay the
images' rows, so the report shows them). The run directory is printed on stdout.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import MoCoV2Transform
from lightly.transforms.utils import IMAGENET_NORMALIZE
from lightly.utils.scheduler import cosine_schedule
from PIL import Image
from torch import nn

from hardstat.classes import CIFAR10_CLASSES
from hardstat.data import DEMO_DIR
from hardstat.integrations.lightly import IdMemoryBank
from hardstat.negatives import band_mask, info_nce, parse_band, similarities
from hardstat.record import Recorder
from hardstat.train.evaluate import knn_eval


class Images(torch.utils.data.Dataset):
    """Rows ``index`` of an (N, H, W, 3) uint8 array, as (transformed image, label, sample_id)."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, index: np.ndarray, transform
    ) -> None:  # type: ignore[no-untyped-def]
        self.images, self.labels, self.index, self.transform = images, labels, index, transform

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        sample_id = int(self.index[i])
        image = self.transform(Image.fromarray(self.images[sample_id]))
        return image, int(self.labels[sample_id]), sample_id


def convnet(width: int) -> nn.Module:
    """A small backbone (three conv blocks, global pooling): (B, 3, H, W) -> (B, 4 width)."""

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    w = width
    return nn.Sequential(
        *block(3, w), nn.MaxPool2d(2), *block(w, 2 * w), nn.MaxPool2d(2), *block(2 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip


class MoCo(nn.Module):
    """lightly's MoCo recipe: backbone + MoCo projection head, and their momentum copies."""

    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        self.backbone = convnet(width)
        self.projection_head = MoCoProjectionHead(4 * width, 4 * width, dim)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.backbone(x))

    @torch.no_grad()
    def forward_momentum(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head_momentum(self.backbone_momentum(x)).detach()


@torch.no_grad()
def features(backbone: nn.Module, data: Images, device: torch.device) -> torch.Tensor:
    backbone.eval()
    loader = torch.utils.data.DataLoader(data, batch_size=512)
    out = torch.cat([F.normalize(backbone(x.to(device)), dim=1).cpu() for x, _, _ in loader])
    backbone.train()
    return out


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/lightly-moco"), help="run directory")
    p.add_argument("--subset", type=int, default=0, help="train on N demo images (0 = all 2,000)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--queue-size", type=int, default=1024, help="K, keys in the memory bank")
    p.add_argument("--width", type=int, default=32, help="backbone width")
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=0.06)
    p.add_argument("--band", default="0-100", help="negatives the loss uses, e.g. 0-5, random:5")
    p.add_argument("--every", type=int, default=5, help="log pairs every N steps")
    p.add_argument("--queries", type=int, default=64, help="queries per logged step (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    device, k, temperature = torch.device(args.device), args.queue_size, args.temperature
    band = parse_band(args.band)
    with np.load(DEMO_DIR / "train.npz") as d, np.load(DEMO_DIR / "test.npz") as dt:
        x, y, xt, yt = d["images"], d["labels"], dt["images"], dt["labels"]
    rng = np.random.default_rng(args.seed)
    index = np.sort(rng.permutation(len(x))[: args.subset]) if args.subset else np.arange(len(x))
    views = MoCoV2Transform(input_size=32, gaussian_blur=0.0)
    train = torch.utils.data.DataLoader(
        Images(x, y, index, views), batch_size=args.batch_size, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )  # fmt: skip
    plain = T.Compose(
        [T.ToTensor(), T.Normalize(IMAGENET_NORMALIZE["mean"], IMAGENET_NORMALIZE["std"])]
    )
    model = MoCo(width=args.width, dim=128).to(device)
    criterion = NTXentLoss(temperature=temperature, memory_bank_size=(k, 128))
    criterion.memory_bank = bank = IdMemoryBank(size=(k, 128))  # keeps each key's sample id
    criterion = criterion.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator(device=device).manual_seed(args.seed + 1)  # random bands
    total = args.epochs * len(train)
    recorder = Recorder.create(
        args.out,
        queue_size=k,
        train_labels=y,  # label of every sample_id (a row of the demo's train.npz)
        test_labels=yt,
        classes=CIFAR10_CLASSES,
        dataset="demo",  # hardstat's name for these images: the report shows them
        image_size=32,
        seed=args.seed,
        every=args.every,
        queries=args.queries,
        band=band,
        config={
            "model": {"backbone": "convnet", "width": args.width, "dim": 128, "queue_size": k},
            "optim": {"batch_size": args.batch_size, "epochs": args.epochs, "lr": args.lr},
            "temperature": temperature,
            "subset": args.subset,
            "trainer": "examples/lightly_moco.py",
        },
    )
    step = 0
    with recorder:
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            for (x_query, x_key), _, ids in train:
                momentum = cosine_schedule(step, total, 0.99, 1.0)
                update_momentum(model.backbone, model.backbone_momentum, m=momentum)
                update_momentum(model.projection_head, model.projection_head_momentum, m=momentum)
                query = model(x_query.to(device))  # (B, 128)
                key = model.forward_momentum(x_key.to(device))  # (B, 128)
                bank.next_batch(ids, step)  # the sample ids of the keys this step enqueues
                q, kn = F.normalize(query, dim=1), F.normalize(key, dim=1)
                if band.is_all:
                    loss = criterion(query, key)  # lightly's loss: reads the bank, enqueues key
                    mask = None
                    assert bank.seen is not None
                    l_pos, l_neg = similarities(q.detach(), kn, bank.seen.keys)  # what it saw
                else:  # hardstat's banded InfoNCE over the same bank
                    bank(kn, update=True)
                    assert bank.seen is not None
                    l_pos, l_neg = similarities(q, kn, bank.seen.keys)  # (B,), (B, K)
                    mask = band_mask(l_neg.detach(), band, gen)
                    loss = info_nce(l_pos, l_neg, temperature, mask).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                recorder.log_step(
                    step,
                    epoch=epoch,
                    query_ids=ids,
                    query_labels=None,  # looked up from train_labels
                    pos_similarity=l_pos.detach(),
                    neg_similarity=l_neg.detach(),
                    neg_ids=bank.seen.sample_ids,  # (K,): -1 for the bank's random initial keys
                    neg_key_steps=bank.seen.key_steps,
                    in_band=mask,
                    losses=info_nce(l_pos.detach(), l_neg.detach(), temperature, mask),
                    loss=loss.detach(),
                    lr=optimizer.param_groups[0]["lr"],
                )
                step += 1
            bank_features = features(model.backbone, Images(x, y, index, plain), device)
            test_features = features(
                model.backbone, Images(xt, yt, np.arange(len(xt)), plain), device
            )
            top1, top5 = knn_eval(
                bank_features, torch.as_tensor(y[index]), test_features, torch.as_tensor(yt),
                len(CIFAR10_CLASSES), k=20,
            )  # fmt: skip
            recorder.log_eval(
                step - 1, epoch=epoch, kind="knn", top1=top1, top5=top5, params={"k": 20, "t": 0.1}
            )
            seconds = time.perf_counter() - t0
            loss_value = float(loss.detach())
            print(
                f"epoch {epoch}: loss {loss_value:.3f}, kNN top-1 {top1:.3f}, {seconds:.1f} s",
                file=sys.stderr,
            )
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
