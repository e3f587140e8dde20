"""Defaults shared by the Python API and the command line (imports nothing: the command line
reads them without loading torch)."""

#: Where runs are stored when no store is named (`Scope(store=...)`, `--store`).
DEFAULT_STORE = "runs/learnscope.db"
