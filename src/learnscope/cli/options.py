"""Options declared once for every command that takes them, so `run` and `sweep` cannot drift.

Each is a Typer option object (default, flags and help) used as the default value of a
command's parameter; `PRESET_OPTIONS` maps the parameter names of the preset options that `run`
and `sweep` share to them (a test checks that both commands take exactly these).
"""

from __future__ import annotations

import typer

from learnscope.defaults import DEFAULT_STORE

#: What `learnscope run` runs: the presets' registry names (learnscope.experiments.presets),
#: written here so that `--help` does not import torch; a test checks they are the registry's.
PRESETS = ("quickstart", "early", "entropycurve", "methods", "equisep", "equisep-depth",
           "trajectories")

# `--dry-run true` reaches the command as an extra argument, which it explains (validation)
EXTRA_ARGS = {"allow_extra_args": True}

StoreOption = typer.Option(DEFAULT_STORE, "--store", "-s", help="Path of the SQLite run store.")

ScaleOption = typer.Option("small", help="Preset scale: 'small' (digits, CPU minutes) or 'paper' "
                           "(the paper's settings: CIFAR-10; equisep: 10x10 MNIST 'cm', 600 "
                           "epochs).")
EpochsOption = typer.Option(None, help="Training epochs per network (quickstart: 8; presets: the "
                            "recipe's).")
StepsOption = typer.Option(None, help="Stop each run after this many updates.")
SeedsOption = typer.Option(None, help="Comma-separated seeds (presets).")
ModelsOption = typer.Option(None, help="Comma-separated model names (presets; equisep: fnn, "
                            "fnn_nobn, fnn_linear, mlp, small_cnn, resnet8, ...).")
DatasetOption = typer.Option(None, help="Dataset name (presets; default by scale; equisep also "
                             "cm, cfm, cc: MNIST, Fashion-MNIST, CIFAR-10 at 10x10; ccg: "
                             "CIFAR-10's green channel at 10x10).")
ScheduleOption = typer.Option(None, help="Measurement schedule, e.g. 'every 1 until 40; epochs "
                              "100; end' (presets).")
DepthsOption = typer.Option(None, help="equisep: comma-separated depths (the reference's "
                            "layer_num; default 2,6,18 or 1..8 for equisep-depth).")
OptimizersOption = typer.Option(None, help="equisep: comma-separated subset of sgd, momentum, "
                                "adam.")
PerClassOption = typer.Option(None, help="equisep: training samples per class (default 100).")
ImbalanceOption = typer.Option(None, help="equisep: long-tailed training set, ratio of the "
                               "largest to the smallest class (uses the imbalanced fuzziness).")
BlocksOption = typer.Option(None, help="entropycurve: comma-separated blocks per stage, the "
                            "depth 6n+2 of each family (1,3: resnet8 and resnet20; default "
                            "1,2,3,4,5).")
DownloadOption = typer.Option(False, "--download", help="Fetch a missing dataset (cifar10, mnist, "
                              "fashion-mnist, omniglot; MD5-checked) into $LEARNSCOPE_DATA, "
                              "else ./data, before anything runs.")
FitFromInputOption = typer.Option(False, "--fit-from-input", help="equisep: fit the law over the "
                                  "input and every layer, as the reference's code does "
                                  "(default: the layers after the input).")
AllLrsOption = typer.Option(False, "--all-lrs", help="equisep: every optimizer at each of its "
                            "three lrs at every depth (27 runs per seed; default: the "
                            "reference's lr per optimizer and depth, 9 runs).")
RerunOption = typer.Option(False, "--rerun", help="Train every run afresh, even when a finished "
                           "run with the same settings is in the store.")

#: The options of a preset's runs, by parameter name: `run` and `sweep` take all of them.
PRESET_OPTIONS = {
    "store": StoreOption, "scale": ScaleOption, "epochs": EpochsOption, "steps": StepsOption,
    "seeds": SeedsOption, "models": ModelsOption, "dataset": DatasetOption,
    "schedule": ScheduleOption, "depths": DepthsOption, "optimizers": OptimizersOption,
    "per_class": PerClassOption, "imbalance": ImbalanceOption, "blocks": BlocksOption,
    "download": DownloadOption, "fit_from_input": FitFromInputOption, "all_lrs": AllLrsOption,
    "rerun": RerunOption,
}
