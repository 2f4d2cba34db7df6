"""The WordNet similarity measures by name, apart from :mod:`hardstat.analysis.wordnet` (which
imports numpy), so the CLI builds its ``--measure`` choices from this table at no cost."""

MEASURES = ("wup", "path", "lch")
"""Similarity measures between two noun synsets (NLTK's ``*_similarity`` methods)."""

MEASURE_TITLES = {"wup": "Wu–Palmer", "path": "path", "lch": "Leacock–Chodorow"}
