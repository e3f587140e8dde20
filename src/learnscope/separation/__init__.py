"""Data separation across layers (He & Su, "A law of data separation in deep learning", 2023).

    import learnscope as ls
    values = ls.separation.measure(model, (x, y))      # {"input": D_0, layer: D_l, ...}
    law = ls.separation.fit_law(values)                # slope, rho = exp(slope), pearson_r, r2
    scope = ls.Scope(model, [ls.Separation((x, y))], ls.every_epoch())

Definitions and the streaming computation: `learnscope.separation.moments`.
"""

import sys

from learnscope.separation import layerwise
from learnscope.separation.law import LawFit, fit_law
from learnscope.separation.layerwise import (
    LAW_MEASURES,
    Separation,
    feature_points,
    measure,
)
from learnscope.separation.moments import ClassMoments, WithinAlong, fuzziness

# Old imports of the module `learnscope.separation.measure` (now `layerwise`) keep working; an
# alias in sys.modules rather than a file, so that importing it never rebinds the package's
# `measure` (the function) to a module.
sys.modules[f"{__name__}.measure"] = layerwise

__all__ = [
    "LAW_MEASURES",
    "ClassMoments",
    "LawFit",
    "Separation",
    "WithinAlong",
    "feature_points",
    "fit_law",
    "fuzziness",
    "measure",
]
