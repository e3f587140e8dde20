"""Command-line values of `learnscope run` and `learnscope sweep`, checked before anything runs.

Pure functions: each takes the raw option values as typed on the command line and returns the
parsed values, or raises UsageError with one line saying what was given, what is allowed and
what to do. The CLI calls them before it opens a store or trains anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import learnscope as ls
from learnscope.experiments import presets

EQUISEP_PRESETS = ("equisep", "equisep-depth")
# entropycurve varies the depth itself (--blocks): its --models are families
ENTROPYCURVE_FAMILIES = presets.ENTROPYCURVE_FAMILIES
# datasets whose inputs are 1-D signals (channels, length); every other registry dataset is
# images (channels, height, width). tests/test_cli_validation.py checks this against data.load.
SIGNAL_DATASETS = ("mnist1d",)
# options that only some presets take: flag -> those presets
PRESET_SPECIFIC = {
    "--blocks": ("entropycurve",),
    "--depths": EQUISEP_PRESETS,
    "--optimizers": ("equisep",),
    "--per-class": EQUISEP_PRESETS,
    "--imbalance": EQUISEP_PRESETS,
    "--fit-from-input": EQUISEP_PRESETS,
    "--all-lrs": ("equisep",),
}
_FLAG_VALUES = ("true", "false", "yes", "no", "on", "off", "1", "0", "y", "n", "t", "f")


class UsageError(ValueError):
    """A command-line value that cannot be used; the message is one line for the user."""


def extra_arguments(command: str, name: str, extra: Sequence[str]) -> None:
    """Refuse words left over after the options (typer's "unexpected extra argument").

    The usual cause is a value after a flag that takes none: `--dry-run true`, which typer reads
    as an extra argument, or as the preset name when the flag comes first.
    """
    stray = next((word for word in (name, *extra) if word.lower() in _FLAG_VALUES), None)
    if stray is not None:
        raise UsageError(
            f"unexpected value {stray!r}: --dry-run (and every other on/off flag, such as "
            f"--download) takes no value; write --dry-run alone to turn it on and leave it out "
            f"to turn it off")
    if extra:
        raise UsageError(f"unexpected extra argument(s) {' '.join(extra)!r}: `learnscope "
                         f"{command}` takes one preset name and --options; quote a value that "
                         f"has spaces, e.g. --schedule 'every 1; end'")


def count(flag: str, value: int | None, *, minimum: int = 1, meaning: str = "",
          example: int = 2) -> int | None:
    """`value` if it is an int >= minimum (None stays None: the default applies)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{flag} {value}: {meaning or flag[2:]} must be an integer >= "
                         f"{minimum}; give e.g. {flag} {example}, or leave it out for the default")
    return value


def ratio(flag: str, value: float | None, *, minimum: float = 1.0, meaning: str = "",
          example: float = 10.0) -> float | None:
    """`value` if it is a finite number >= minimum (None stays None)."""
    if value is None:
        return None
    if not value >= minimum or value == float("inf"):
        raise UsageError(f"{flag} {value:g}: {meaning or flag[2:]} must be a number >= "
                         f"{minimum:g}; give e.g. {flag} {example:g}, or leave it out")
    return float(value)


def _items(flag: str, text: str | None) -> list[str] | None:
    """The comma-separated items of `text`; None when the option was not given."""
    if text is None:
        return None
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise UsageError(f"{flag} {text!r}: an empty item; give comma-separated values, e.g. "
                         f"{flag} {_EXAMPLES.get(flag, 'a,b')}")
    _once(flag, text, items)
    return items


def _once(flag: str, text: str, values: Sequence[Any]) -> None:
    twice = list(dict.fromkeys(str(v) for v in values if values.count(v) > 1))
    if twice:
        raise UsageError(f"{flag} {text!r}: {', '.join(twice)} given more than once (it would "
                         f"run the same runs twice); give each value once")


_EXAMPLES = {"--seeds": "0,1,2", "--depths": "2,6,18", "--blocks": "1,3",
             "--models": "resnet20,convnet20", "--optimizers": "sgd,adam"}


def int_list(flag: str, text: str | None, *, minimum: int, meaning: str) -> list[int] | None:
    """Comma-separated integers >= minimum, each once (None when the option was not given)."""
    items = _items(flag, text)
    if items is None:
        return None
    values = []
    for item in items:
        try:
            value = int(item)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise UsageError(f"{flag} {text!r}: {item!r} is not an integer >= {minimum} "
                             f"({meaning}); give comma-separated integers, e.g. {flag} "
                             f"{_EXAMPLES[flag]}")
        values.append(value)
    _once(flag, text, values)
    return values


def choice_list(flag: str, text: str | None, allowed: Sequence[str], *, what: str,
                ) -> list[str] | None:
    """Comma-separated names out of `allowed`, each once (None when not given)."""
    items = _items(flag, text)
    if items is None:
        return None
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise UsageError(f"{flag} {text!r}: unknown {what} {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(allowed)}")
    return items


def measurement_schedule(text: str | None) -> str | None:
    """`text` if learnscope.train.parse reads it as a measurement schedule."""
    if text is None:
        return None
    from learnscope.train import parse

    try:
        parse(text)
    except ValueError as error:
        raise UsageError(f"--schedule {text!r}: {error}") from None
    return text


def dataset_kind(name: str) -> str:
    """"signal" for 1-D inputs, "image" for 2-D ones (registry names, any spelling)."""
    key = ls.data.DATASETS.canonical(name) if name in ls.data.DATASETS else name
    return "signal" if key in SIGNAL_DATASETS else "image"


def image_datasets() -> list[str]:
    """The registry's datasets with image inputs."""
    return [name for name in ls.data.list() if dataset_kind(name) == "image"]


def model_families() -> list[str]:
    """Conv families of the model registry (each takes a depth 6n+2: resnet20, convnet8...)."""
    return sorted(ls.models.FAMILIES)


def fixed_models() -> list[str]:
    """Models of the registry without a depth in the name (mlp, small_cnn, fnn...)."""
    return sorted(ls.models.MODELS)


def is_model(name: str) -> bool:
    """Whether the model registry builds `name` (a fixed name or <family><6n+2>)."""
    try:
        ls.models.canonical(name)
    except ValueError:
        return False
    return True


def flattens_input(model: str) -> bool:
    """Whether `model` flattens its input (and so takes 1-D signals as well as images)."""
    return ls.models.flattens_input(model)


def _model_menu() -> str:
    return (f"{', '.join(fixed_models())}, or a family {', '.join(model_families())} with a "
            f"depth 6n+2 (e.g. resnet20)")


def models_for(preset: str, text: str | None) -> list[str] | None:
    """The --models of `preset`: registry names, or for entropycurve its families."""
    names = _items("--models", text)
    if names is None:
        return None
    if preset == "entropycurve":
        wrong = [n for n in names if n not in ENTROPYCURVE_FAMILIES]
        if wrong:
            hint = ""
            match = re.fullmatch(r"([a-z_]+?)(\d+)", wrong[0])
            if match and match[1] in ENTROPYCURVE_FAMILIES and is_model(wrong[0]):
                hint = (f" ({wrong[0]} is --models {match[1]} --blocks "
                        f"{(int(match[2]) - 2) // 6})")
            raise UsageError(f"--models {text!r}: entropycurve takes network families and "
                             f"varies their depth with --blocks (blocks per stage); "
                             f"{', '.join(map(repr, wrong))} "
                             f"{'is' if len(wrong) == 1 else 'are'} not one of "
                             f"{', '.join(ENTROPYCURVE_FAMILIES)}{hint}")
        return names
    unknown = [n for n in names if not is_model(n)]
    if unknown:
        raise UsageError(f"--models {text!r}: unknown model {', '.join(map(repr, unknown))}; "
                         f"{preset} takes {_model_menu()}")
    return [ls.models.canonical(n) for n in names]


def dataset_for(preset: str, name: str | None) -> str | None:
    """--dataset: a registry dataset (its registered name), or for the equisep presets also cm,
    cfm, cc."""
    equisep = preset in EQUISEP_PRESETS
    allowed = [*ls.data.list(), *(presets.EQUISEP_DATASETS if equisep else ())]
    if name is not None and name in ls.data.DATASETS:
        return ls.data.DATASETS.canonical(name)  # any spelling: "Fashion_MNIST"
    if name is not None and name not in allowed:
        resized = [f"{key} ({full} at 10x10)" for key, full in presets.EQUISEP_DATASETS.items()]
        keys = f"; or {', '.join(resized)}" if equisep else ""
        raise UsageError(f"--dataset {name!r}: unknown dataset; {preset} takes "
                         f"{', '.join(ls.data.list())}{keys}")
    return name


def downloadable(dataset: str) -> bool:
    """Whether registry dataset `dataset` has files that learnscope can download."""
    return "download" in ls.data.options(dataset)


def preset_options(preset: str, scale: str, *, epochs: int | None = None,
                   steps: int | None = None, seeds: str | None = None,
                   models: str | None = None, dataset: str | None = None,
                   schedule: str | None = None, depths: str | None = None,
                   optimizers: str | None = None, per_class: int | None = None,
                   imbalance: float | None = None, blocks: str | None = None,
                   every: int | None = None, **typed: Any) -> dict[str, Any]:
    """The overrides of `presets.expand` from the raw CLI values of a preset (run and sweep).

    Values not given (None) are left out, so the preset's settings apply. Whether the models
    and the dataset fit each other is checked on the expanded runs (`runs_fit`). `typed`: values
    that need no parsing (on/off flags); they go to `expand` as they are, which refuses a
    setting it does not know.
    """
    if preset not in presets.sweepable():
        raise UsageError(str(presets.PRESET_REGISTRY.unknown(preset,
                                                             known=[*presets.sweepable()])))
    if scale not in presets.SCALES:
        raise UsageError(f"--scale {scale!r}: unknown scale; use {' or '.join(presets.SCALES)}")
    given = {"--blocks": blocks, "--depths": depths, "--optimizers": optimizers,
             "--per-class": per_class, "--imbalance": imbalance,
             "--fit-from-input": typed.get("fit_from_input"),
             "--all-lrs": typed.get("all_lrs")}
    for flag, value in given.items():
        if value is not None and preset not in PRESET_SPECIFIC[flag]:
            takers = PRESET_SPECIFIC[flag]
            shown = "" if isinstance(value, bool) else f" {value}"
            raise UsageError(f"{flag}{shown}: only {' and '.join(takers)} "
                             f"{'takes' if len(takers) == 1 else 'take'} {flag}, {preset} does "
                             f"not; leave it out")
    if every is not None:
        raise UsageError(f"--every {every}: only quickstart takes --every; the presets set "
                         f"when they measure with --schedule, e.g. --schedule 'every 5; end'")
    overrides: dict[str, Any] = {
        "epochs": count("--epochs", epochs, meaning="training epochs per network"),
        "steps": count("--steps", steps, meaning="updates per run", example=20),
        "seeds": int_list("--seeds", seeds, minimum=0, meaning="seeds"),
        "models": models_for(preset, models),
        "dataset": dataset_for(preset, dataset),
        "schedule": measurement_schedule(schedule),
        "blocks": int_list("--blocks", blocks, minimum=1, meaning="blocks per stage"),
        "depths": int_list("--depths", depths, minimum=0,
                           meaning="the reference's layer_num"),
        "optimizers": choice_list("--optimizers", optimizers,
                                  tuple(dict.fromkeys(o for o, _ in presets.EQUISEP_OPTIMIZERS)),
                                  what="optimizer"),
        "per_class": count("--per-class", per_class, meaning="training samples per class",
                           example=100),
        "imbalance": ratio("--imbalance", imbalance,
                           meaning="the ratio of the largest to the smallest class"),
    }
    return {key: value for key, value in {**typed, **overrides}.items() if value is not None}


def runs_fit(preset: str, specs: Sequence[Any], *, models: Sequence[str] | None = None,
             download: bool = False) -> None:
    """Refuse runs whose model cannot take their dataset, and --download with nothing to fetch.

    specs: the expanded runs (RunSpecs); models: the --models given (None: the preset's own).
    """
    on_signals = [s for s in specs if dataset_kind(s.dataset) == "signal"]
    conv = list(dict.fromkeys(s.model for s in on_signals if not flattens_input(s.model)))
    if conv:
        dataset = on_signals[0].dataset
        # the networks a preset runs whatever --models says (methods: fixup_resnet20, ...)
        kept = set() if preset == "entropycurve" else {
            s.model for s in presets.expand(preset, models=[ls.models.FLAT_INPUT[0]])}
        own = [m for m in conv if m in kept and (models is None or m not in models)]
        images = f"an image dataset ({', '.join(image_datasets())})"
        if own:
            raise UsageError(f"--dataset {dataset} has 1-D inputs, but the networks of "
                             f"{preset} ({', '.join(conv)}) are 2-D convnets, and it runs "
                             f"{', '.join(own)} whatever --models says; use {images}")
        fits = images if preset == "entropycurve" else (
            f"{images} or --models {', '.join(ls.models.FLAT_INPUT)} (networks that flatten "
            f"their input)")
        raise UsageError(f"--dataset {dataset} has 1-D inputs, but the networks of {preset} "
                         f"({', '.join(conv)}) are 2-D convnets; use {fits}")
    if download and not datasets_to_check(specs):
        used = ", ".join(dict.fromkeys(s.dataset for s in specs))
        fetchable = [name for name in ls.data.list() if downloadable(name)]
        raise UsageError(f"--download: {preset} uses {used}, which has nothing to download "
                         f"(it is embedded or generated); --download is for "
                         f"{', '.join(fetchable)}; leave it out")


def not_for(command: str, given: dict[str, Any]) -> None:
    """Refuse preset options given to quickstart or trajectories (`given`: flag -> value)."""
    for flag, value in given.items():
        if value is not None and value is not False:
            shown = flag if value is True else f"{flag} {value}"
            raise UsageError(f"{shown}: {command} does not take {flag} (it is an option "
                             f"of the presets {', '.join(presets.PRESETS)}); leave it out")


def datasets_to_check(specs: Iterable[Any]) -> list[str]:
    """The registry datasets of `specs` that live in files (so may be missing), each once."""
    return [name for name in dict.fromkeys(spec.dataset for spec in specs)
            if downloadable(name)]


def ensure_data(specs: Iterable[Any], download: bool) -> None:
    """Load every file dataset of `specs` once, fetching it first with `download`.

    So a missing dataset is reported (with the command-line advice: --download) before a store
    is opened, and a download happens once, not in every run or worker.
    """
    for name in datasets_to_check(specs):
        try:
            ls.data.load(name, download=download, normalize=False, val_fraction=0.0)
        except ls.data.DatasetNotFoundError as error:
            raise UsageError(error.for_command_line()) from None
        except (ls.data.DownloadError, ls.data.DatasetFormatError) as error:
            raise UsageError(str(error)) from None


def run_lengths(specs: Iterable[Any]) -> None:
    """Every run's --steps fits its schedule (a one-cycle schedule cannot run past its end)."""
    from learnscope.train import recipes

    sizes: dict[str, int] = {}
    for spec in specs:
        recipe = recipes.get(spec.recipe, **spec.recipe_options)
        if spec.max_steps is None or recipe.scheduler != "onecycle":
            continue
        key = json.dumps([spec.dataset, spec.data_options], sort_keys=True, default=str)
        if key not in sizes:
            sizes[key] = len(ls.data.load(spec.dataset, seed=spec.seed,
                                          **spec.data_options).train)
        try:
            recipe.check_updates(spec.max_steps, -(-sizes[key] // recipe.batch_size))
        except ValueError as error:
            raise UsageError(f"--steps {spec.max_steps} for {spec.name}: {error}") from None


def run_device(device: str) -> str:
    """--device of `learnscope run`: cpu, cuda or cuda:N that torch has here."""
    import torch

    from learnscope.experiments.sweep import cuda_device_count

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device {device!r}: unknown device; `learnscope run` takes cpu, "
                         f"cuda or cuda:N (and `learnscope sweep` also auto)") from None
    gpus = cuda_device_count() if parsed.type == "cuda" else 0
    if parsed.type == "cuda" and (gpus == 0 or (parsed.index or 0) >= gpus):
        raise UsageError(f"--device {device}: torch sees {gpus} CUDA GPU(s) here; use "
                         f"--device cpu{'' if gpus == 0 else ' or cuda:0..cuda:' + str(gpus - 1)}")
    return device


def quickstart_options(*, epochs: int | None, every: int | None, seed: int) -> tuple[int, int]:
    """(epochs, every) of the quickstart, defaults 8 and 10; the seed must be >= 0."""
    count("--seed", seed, minimum=0, meaning="the random seed", example=0)
    epochs = count("--epochs", epochs, meaning="training epochs per network")
    every = count("--every", every, meaning="the steps between measurements", example=10)
    return 8 if epochs is None else epochs, 10 if every is None else every


def trajectory_options(*, epochs: int | None, iterations: int | None,
                       **options: Any) -> dict[str, Any]:
    """The keyword options of `run_trajectories`, checked by TrajectorySettings, flag-named.

    --epochs and --iterations mean the same (default 10); `options` are the other settings.
    """
    from learnscope.experiments.trajectories import settings_from
    from learnscope.models.activations import ACTIVATIONS

    count("--epochs", epochs, meaning="training epochs on the task")
    count("--iterations", iterations, meaning="training epochs on the task")
    if epochs is not None and iterations is not None and epochs != iterations:
        raise UsageError(f"--epochs {epochs} and --iterations {iterations} mean the same; "
                         f"give one")
    chosen = {**options, "iterations": next(
        (v for v in (iterations, epochs) if v is not None), 10)}
    activation = chosen.get("activation")
    if activation is not None and activation not in ACTIVATIONS:
        raise UsageError(f"--activation {activation!r}: unknown activation; choose from "
                         f"{', '.join(ACTIVATIONS)}")
    try:
        settings_from(**chosen)
    except ValueError as error:
        setting = str(error).split(" ", 1)[0]
        if setting in chosen:  # the messages start with the setting's name
            raise UsageError(f"--{setting.replace('_', '-')} {chosen[setting]}: {error}"
                             ) from None
        raise UsageError(str(error)) from None
    return chosen
