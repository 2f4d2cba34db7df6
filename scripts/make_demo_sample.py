"""Build the small real-image sample that ``hardstat demo`` trains on (run from the repo root).

Takes a class-balanced, seeded sample of the CIFAR-10 copy in ``../shared/data/cifar10``
(Krizhevsky, Nair and Hinton; see README's data credits): 200 train and 50 test images per
class, and writes ``hardstat/data/cifar10-demo/{train.npz,test.npz,classes.txt}`` in the
``npz:`` dataset format. Sample ids in the demo are indices into these files; the original
indices are kept in each file's ``source_index`` array.

    python scripts/make_demo_sample.py [--source ../shared/data/cifar10] [--train 200 --test 50]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def sample(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = [
        np.sort(rng.choice(np.flatnonzero(labels == c), per_class, replace=False))
        for c in range(int(labels.max()) + 1)
    ]
    return rng.permutation(np.concatenate(picks))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "cifar10")
    p.add_argument("--out", type=Path, default=REPO / "hardstat" / "data" / "cifar10-demo")
    p.add_argument("--train", type=int, default=200, help="train images per class")
    p.add_argument("--test", type=int, default=50, help="test images per class")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not (args.source / "train.npz").is_file():
        raise SystemExit(f"{args.source}/train.npz not found; pass --source DIR")
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", args.train), ("test", args.test)):
        data = np.load(args.source / f"{split}.npz")
        idx = sample(data["labels"], per_class, rng)
        np.savez_compressed(
            args.out / f"{split}.npz",
            images=data["images"][idx],
            labels=data["labels"][idx],
            source_index=idx,
        )
        digest = hashlib.sha256((args.out / f"{split}.npz").read_bytes()).hexdigest()[:16]
        print(f"{split}: {len(idx)} images -> {args.out / f'{split}.npz'} (sha256 {digest}...)")
    (args.out / "classes.txt").write_text((args.source / "classes.txt").read_text())


if __name__ == "__main__":
    main()
