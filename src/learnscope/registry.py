"""Things by name: one registry mechanism for models, datasets, projections, presets and probes.

A :class:`Registry` maps names to entries (factories, readers, classes). Entries are added with
the decorator ``@registry.register("name", "alias", ...)`` (or ``registry.add(name, entry)``) and
looked up with ``registry[name]``; ``registry.names()`` lists them in registration order, like
timm's ``register_model`` / ``list_models``. Every registry normalises names the same way
(:func:`normalise`: case, "-", "_" and spaces do not matter, so "Fashion_MNIST", "fashion-mnist"
and "fashionmnist" are one name) and refuses an unknown name with the same one-line error::

    unknown dataset 'imagenet': known ones are cifar10, digits, ...; did you mean 'x'?

This module is a leaf: it imports nothing from learnscope and nothing heavy, so the layers that
must not import the model zoo (the separation measure) can still read what the models register
(:data:`feature_blocks`).
"""

from __future__ import annotations

import difflib
import os
import re
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")

_IGNORED = re.compile(r"[-_\s]+")


def normalise(name: str) -> str:
    """The key a name is looked up by: lower-case, without "-", "_" and whitespace."""
    return _IGNORED.sub("", name.casefold())


class UnknownNameError(KeyError, ValueError):
    """A name no registry entry has; a ValueError (bad value) and a KeyError (failed lookup).

    Its text is the plain one-line message (a KeyError would otherwise print it quoted).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(Mapping[str, T], Generic[T]):
    """Entries of one kind by name; see the module docstring.

    A read-only Mapping from the registered (canonical) names to the entries whose lookups
    normalise the name and accept aliases: ``"AutoencoderWithSOM" in projections`` is True,
    ``list(projections)`` gives the canonical names only.

    Args:
        kind: what the entries are, singular ("model", "dataset"); used in the error texts.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}  # canonical name -> entry, in registration order
        self._keys: dict[str, str] = {}  # normalised name or alias -> canonical name
        _REGISTRIES.append(weakref.ref(self))

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """A decorator adding what it decorates under `name` (and `aliases`); returns it as is."""

        def decorator(entry: T) -> T:
            self.add(name, entry, *aliases)
            return entry

        return decorator

    def add(self, name: str, entry: T, *aliases: str) -> None:
        """Add `entry` under `name` and `aliases`; a name that is taken (normalised) is refused."""
        spellings = (name, *aliases)
        for spelling in spellings:
            self._check_type(spelling)
            if not normalise(spelling):
                raise ValueError(f"a {self.kind} name needs a letter or a digit, got {spelling!r}")
        keys = [normalise(s) for s in spellings]
        for spelling, key in zip(spellings, keys, strict=True):
            if key in self._keys:
                raise ValueError(
                    f"{self.kind} name {spelling!r} is taken by the registered {self.kind} "
                    f"{self._keys[key]!r} (names compare without case, '-', '_' and spaces); "
                    "pick another name or unregister that one first")
        if len(set(keys)) < len(keys):
            raise ValueError(f"{self.kind} {name!r}: its name and aliases {list(aliases)} repeat "
                             "one name (compared without case, '-', '_' and spaces)")
        self._entries[name] = entry
        self._keys.update(dict.fromkeys(keys, name))

    def unregister(self, name: str) -> T:
        """Remove the entry `name` (any spelling or alias) with all its aliases; returns it."""
        canonical = self.canonical(name)
        for key in [k for k, v in self._keys.items() if v == canonical]:
            del self._keys[key]
        return self._entries.pop(canonical)

    def canonical(self, name: str) -> str:
        """The registered name that `name` (any spelling or alias) stands for."""
        self._check_type(name)
        key = normalise(name)
        if key not in self._keys:
            raise self.unknown(name)
        return self._keys[key]

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order (aliases left out)."""
        return tuple(self._entries)

    def aliases(self, name: str) -> tuple[str, ...]:
        """The normalised keys other than the name's own that look `name` up."""
        canonical = self.canonical(name)
        own = normalise(canonical)
        return tuple(k for k, v in self._keys.items() if v == canonical and k != own)

    def unknown(self, name: object, reason: str = "", *, known: list[str] | None = None,
                note: str = "") -> UnknownNameError:
        """The error for a name that is not registered (raise it): what was given, the known
        names (`known`, default `names()`), then `note`, and the closest name if one is close.
        `reason` follows the name, e.g. " (depth 21 is not 6n+2)"."""
        shown = self.names() if known is None else known
        message = (f"unknown {self.kind} {name!r}{reason}: known ones are "
                   f"{', '.join(shown) if shown else '(none registered)'}{note}")
        closest = _closest(name, {normalise(n): n for n in shown} | {
            k: v for k, v in self._keys.items() if v in shown}) if isinstance(name, str) else None
        if closest is not None:
            message += f"; did you mean {closest!r}?"
        return UnknownNameError(message)

    def _check_type(self, name: object) -> None:
        if not isinstance(name, str):
            raise TypeError(f"a {self.kind} name must be a string, got {name!r}")

    def __getitem__(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalise(name) in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


_REGISTRIES: list[weakref.ref[Registry]] = []  # every registry made (Mappings are unhashable)


@contextmanager
def restoring() -> Iterator[None]:
    """Every registry as it is now, again after the with block, whatever was registered or
    unregistered inside it (the test suite runs every test in one)."""
    _REGISTRIES[:] = [ref for ref in _REGISTRIES if ref() is not None]
    saved = [(registry, dict(registry._entries), dict(registry._keys))
             for registry in (ref() for ref in _REGISTRIES) if registry is not None]
    try:
        yield
    finally:
        for registry, entries, keys in saved:
            registry._entries, registry._keys = entries, keys


def _closest(name: str, by_key: dict[str, str], cutoff: float = 0.75) -> str | None:
    """The name whose key is most similar to `name`'s (difflib ratio >= cutoff); ties go to the
    longer common prefix, then to the one listed first ("resnet21": resnet20, not resnet14)."""
    key = normalise(name)
    matcher = difflib.SequenceMatcher(b=key)
    best, best_score = None, (cutoff, -1)
    for other, shown in by_key.items():
        matcher.set_seq1(other)
        prefix = len(os.path.commonprefix([key, other]))
        if (matcher.ratio(), prefix) > best_score:
            best, best_score = shown, (matcher.ratio(), prefix)
    return best


#: Module types whose outputs are a network's features, one per block (residual blocks...).
#: The model modules register their block classes here; the separation measure reads
#: ``feature_blocks.values()`` to find the layers of a model without importing the model zoo.
feature_blocks: Registry[type] = Registry("feature block")

__all__ = ["Registry", "UnknownNameError", "feature_blocks", "normalise", "restoring"]
