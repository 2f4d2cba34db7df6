"""``hardstat analyze semantic``."""

from __future__ import annotations
