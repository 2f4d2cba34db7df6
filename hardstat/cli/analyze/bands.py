"""``hardstat analyze bands``."""

from __future__ import annotations
