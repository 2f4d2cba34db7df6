"""Thin adapters between hardstat's recorder and other libraries (optional extras).

- :mod:`hardstat.integrations.lightly`: ``IdMemoryBank``, lightly's memory bank that keeps the
  sample id and enqueue step of every key (``pip install hardstat[lightly]``).
- :mod:`hardstat.integrations.lightning`: ``RecorderCallback``, a PyTorch Lightning callback
  that calls the recorder once per training step (``pip install hardstat[lightning]``).

Each module imports its library when imported; nothing here is imported by ``hardstat`` itself.
"""
