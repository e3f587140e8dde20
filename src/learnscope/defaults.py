"""Defaults and names shared by the measuring side, the command line and the views (imports
nothing: the command line and the dashboard read them without loading torch)."""

#: Where runs are stored when no store is named (`Scope(store=...)`, `--store`).
DEFAULT_STORE = "runs/learnscope.db"

#: The rows the Separation probe stores for its law fit (layer `law`), in this order.
LAW_MEASURES = ("law_slope", "law_rho", "law_pearson_r", "law_r2", "law_first", "law_last")
