"""Kept for old imports: this module is `learnscope.trajectory.weights_probe`."""

import sys

from learnscope.trajectory import weights_probe as _module

sys.modules[__name__] = _module
