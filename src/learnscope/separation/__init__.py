"""Data separation across layers (He & Su, "A law of data separation in deep learning", 2023).

    import learnscope as ls
    values = ls.separation.measure(model, (x, y))      # {"input": D_0, layer: D_l, ...}
    law = ls.separation.fit_law(values)                # slope, rho = exp(slope), pearson_r, r2
    scope = ls.Scope(model, [ls.Separation((x, y))], ls.every_epoch())

Definitions and the streaming computation: `learnscope.separation.moments`.
"""

from learnscope.separation.law import LawFit, fit_law
from learnscope.separation.measure import (
    LAW_MEASURES,
    Separation,
    feature_points,
    measure,
)
from learnscope.separation.moments import ClassMoments, WithinAlong, fuzziness

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
