"""hardstat: study the negatives in contrastive self-supervised learning.

Glossary (used in code, log columns, CLI flags and docs):
query, key, positive, negative, queue, similarity (cosine, before temperature),
logit (after temperature), rank (1 = most similar = hardest), percentile, band,
step, epoch, run, sample_id (``query_id`` and ``neg_id`` are sample ids in a role).
"""

__version__ = "0.1.0"
