"""Analyses of run logs over DuckDB (never imports torch)."""
