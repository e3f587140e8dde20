"""The command line's structure: `run` and `sweep` share their preset options (declared once in
learnscope.cli.options), the preset names shown by `--help` are the registry's, and loading the
command line does not import torch."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

from learnscope import cli
from learnscope.cli import options
from learnscope.cli.run import run
from learnscope.cli.sweep import sweep_command


def _params(name: str) -> dict[str, click.Parameter]:
    command = typer.main.get_command(cli.app).commands[name]
    return {param.name: param for param in command.params}


def test_run_and_sweep_take_the_shared_preset_options_with_the_same_flags_defaults_and_help():
    run_params, sweep_params = _params("run"), _params("sweep")
    for name, declared in options.PRESET_OPTIONS.items():
        for command in (run, sweep_command):  # the very object declared once, in both
            assert inspect.signature(command).parameters[name].default is declared, (command,
                                                                                   name)
        mine, theirs = run_params[name], sweep_params[name]
        assert (mine.opts, mine.secondary_opts, mine.default, mine.help, mine.is_flag) == (
            theirs.opts, theirs.secondary_opts, theirs.default, theirs.help, theirs.is_flag)
        assert mine.help, name
    assert run_params["store"].default == options.DEFAULT_STORE == "runs/learnscope.db"
    assert run_params["blocks"].default is None and run_params["download"].default is False


def test_every_option_both_commands_take_is_declared_once_or_says_why_it_differs():
    both = set(_params("run")) & set(_params("sweep"))
    # these mean something else per command: run trains in this process, sweep spreads runs
    differ = {"ctx", "name", "device", "threads", "dry_run"}
    assert both - differ == set(options.PRESET_OPTIONS)


def test_the_preset_names_of_the_help_are_the_registry_s():
    from learnscope.experiments.presets import PRESET_REGISTRY

    assert cli.PRESETS == options.PRESETS == PRESET_REGISTRY.names()


def test_the_default_store_is_the_python_api_s():
    from learnscope.scope import DEFAULT_STORE

    assert options.DEFAULT_STORE == DEFAULT_STORE


def _imports_torch(code: str) -> bool:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(cli.__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    job = subprocess.run([sys.executable, "-c", code + "\nprint('torch' in sys.modules)"],
                         capture_output=True, text=True, env=environment, timeout=120)
    assert job.returncode == 0, job.stderr
    return job.stdout.strip().splitlines()[-1] == "True"


# The package's root (learnscope/__init__.py) is replaced by a bare package, so this checks the
# command line's own modules and what they import.
WITHOUT_THE_ROOT = """
import importlib.util, sys, types
found = importlib.util.find_spec("learnscope")
root = types.ModuleType("learnscope")
root.__path__ = list(found.submodule_search_locations)
root.__version__ = "0"
sys.modules["learnscope"] = root
"""


def test_the_command_line_modules_import_no_torch():
    assert not _imports_torch(WITHOUT_THE_ROOT + "import learnscope.cli")
    # a command that needs torch does import it (the check above can fail)
    assert _imports_torch(WITHOUT_THE_ROOT + "import learnscope.cli\n"
                          "import learnscope.experiments.presets")


@pytest.mark.skipif(_imports_torch("import sys, learnscope"),
                    reason="`import learnscope` itself imports torch (its root is not lazy yet)")
def test_import_learnscope_cli_imports_no_torch():
    assert not _imports_torch("import sys, learnscope.cli")
