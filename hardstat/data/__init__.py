"""Data files shipped with hardstat (no code beyond their locations).

- ``cifar10_wordnet.csv``, ``cifar100_wordnet.csv``: WordNet class-similarity tables.
- ``cifar10-demo/``: the ``demo`` dataset, 2,000 train and 500 test CIFAR-10 images
  (``scripts/make_demo_sample.py``), in the ``npz:`` format.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
DEMO_DIR = DATA_DIR / "cifar10-demo"
