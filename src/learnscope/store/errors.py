"""The store's error type, in a module of its own so that every part of the store can raise it
without importing the others."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A run store cannot be opened, or a run/write request cannot be satisfied."""
