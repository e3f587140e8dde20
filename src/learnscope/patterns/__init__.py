"""Activation patterns: exact counting of every on/off pattern of every ReLU-like layer.

    counts = learnscope.patterns.count(model, data)        # {layer: PatternCounts}
    learnscope.patterns.count(model, data, backend="torch")  # counted on the activations' device
    learnscope.patterns.measures.entropy(counts["fc1"])
"""

from learnscope.patterns import measures
from learnscope.patterns.activation_patterns import (
    ActivationPatterns,
    NonFiniteActivationError,
    count,
    count_layers,
)
from learnscope.patterns.counts import PatternCounter, PatternCounts
from learnscope.patterns.device_counts import DevicePatternCounter
from learnscope.patterns.keys import PatternLayout, pack, pack_keys, unpack
from learnscope.patterns.layers import ActivationTap, register_activation

__all__ = [
    "ActivationPatterns",
    "ActivationTap",
    "DevicePatternCounter",
    "NonFiniteActivationError",
    "PatternCounter",
    "PatternCounts",
    "PatternLayout",
    "count",
    "count_layers",
    "measures",
    "pack",
    "pack_keys",
    "register_activation",
    "unpack",
]
