"""Every random stream of a run, named in one place.

A run's randomness all comes from its config ``seed``. Each stream below has its own seed,
derived here from ``seed`` (and, where processes differ, from the process index), so that one
stream can change without shifting another; a resumed run continues the per-process streams
from the generator states in its checkpoint. No torch here: the seeds are plain integers, used
by the trainer, the recorder and the data loaders.

==============  ==========================  ===================================================
stream          seed                        draws
==============  ==========================  ===================================================
``weights``     seed                        torch's global generator: the initial weights (the
                                            key encoder is a copy of the query encoder)
``queue``       seed + 3                    the queue's initial random keys
``epoch_order`` seed * 1_000_003 + epoch    the sample order of an epoch (the same in every
                                            process: each takes its share of a global batch)
``process``     seed + 1_000_003 * process  the base of a process's own streams below (process
                                            0 uses ``seed`` itself, so one process = no offset)
``augment``     process seed + 1            both views' crops, jitter, grayscale, blur, flips
``model``       process seed + 2            the key shuffle through BatchNorm and the draws of
                                            a random band
``log_queries`` process seed + 7919         which queries of a logged step the recorder keeps
``subset``      seed                        which training images ``--subset`` keeps
``synthetic``   (seed, 0 or 1, n)           ``synthetic:N`` images: train (0), test (1)
``linear``      seed                        the linear probe's mini-batch order
==============  ==========================  ===================================================
"""

from __future__ import annotations

_PRIME = 1_000_003  # spaces epochs and processes apart (a prime larger than any epoch count)
_QUEUE = 3
_AUGMENT = 1
_MODEL = 2
_LOG_QUERIES = 7919

SYNTHETIC_TRAIN = 0
"""The ``stream`` of ``synthetic:N`` training images (``train.data.synthetic_images``)."""
SYNTHETIC_TEST = 1
"""The ``stream`` of ``synthetic:N`` test images."""


def weights(seed: int) -> int:
    """Seed of torch's global generator when the model is built: the initial weights."""
    return seed


def queue(seed: int) -> int:
    """Seed of the queue's initial random keys."""
    return seed + _QUEUE


def epoch_order(seed: int, epoch: int) -> int:
    """Seed of an epoch's sample order (shared by every process)."""
    return seed * _PRIME + epoch


def process(seed: int, index: int) -> int:
    """A process's own seed, the base of its streams: ``seed`` itself for process 0, so a
    single-process run is unchanged."""
    return seed + _PRIME * index


def augment(process_seed: int) -> int:
    """Seed of a process's augmentation generator (both views)."""
    return process_seed + _AUGMENT


def model(process_seed: int) -> int:
    """Seed of a process's model generator: the key shuffle and random-band draws."""
    return process_seed + _MODEL


def log_queries(process_seed: int) -> int:
    """Seed of the recorder's choice of logged queries (``Recorder(seed=...)`` passes its
    ``seed`` through this)."""
    return process_seed + _LOG_QUERIES


def subset(seed: int) -> int:
    """Seed of the permutation whose prefix is the ``--subset`` of training images."""
    return seed


def linear_probe(seed: int) -> int:
    """Seed of the linear probe's mini-batch order."""
    return seed
