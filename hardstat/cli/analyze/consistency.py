"""``hardstat analyze consistency``."""

from __future__ import annotations
