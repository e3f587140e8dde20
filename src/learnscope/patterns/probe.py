"""Kept for old imports: this module is `learnscope.patterns.activation_patterns`."""

import sys

from learnscope.patterns import activation_patterns as _module

sys.modules[__name__] = _module
