"""`learnscope export` lives in :mod:`learnscope.cli.export`; this old path re-exports it."""

from learnscope.cli.export import EXTRAS, FORMAT_HELP, SUFFIXES, default_destination, export_command

__all__ = ["EXTRAS", "FORMAT_HELP", "SUFFIXES", "default_destination", "export_command"]
