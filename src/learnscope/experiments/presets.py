"""Experiment presets of the activation-pattern paper, at paper scale or small scale.

A preset expands into RunSpecs: self-contained, serialisable descriptions of one training run
(model, data, recipe, seed, schedule, probe settings). `execute(spec, store)` runs one. A run is
identified by its name and the fingerprint of its resolved settings (`run_identity`, see
learnscope.experiments.identity): a finished run with the same name and fingerprint is reused, an
unfinished one is resumed from its checkpoint, one that another live process is training is left
to it, and other settings under the same name start a new run (`NAME~<fingerprint prefix>`).
`plan(specs, store)` tells which of these will happen, without running anything.

- early (Figure 1): ResNet-20, ConvNet-20, ToyNet-20; measured every step of the first 3,000.
- entropycurve (Figure 2): the three nets x 1-5 blocks per stage x 25 seeds; measured at
  initialisation, after 8 and 40 steps, right before the first lr drop and at the end.
- methods (Figures 3, 4): ConvNet-20 and ResNet-20 with ReLU, PReLU, LeakyReLU, cyclic and
  one-cycle schedules, FixUp ResNet-20, PyramidNet-20; measured every epoch, and every measured
  state compared with the final network afterwards.

Presets of the equi-separation paper (He & Su, PNAS 2023; see docs/equisep.md), measured by the
Separation probe (fuzziness D_l per layer and the log-linear law fit):

- equisep: feed-forward Linear-BN-ReLU nets, width 100, the reference's depths 2, 6, 18 x nine
  optimizer / learning-rate pairs (sgd 0.3 0.03 0.01, momentum 0.3 0.01 0.001, adam 3e-3 1e-3
  3e-4) per seed; 600 epochs, batch 128, wd 5e-4, lr / 10 at 1/3 and 2/3 of training.
- equisep-depth: the same nets with depth 1..8, Adam at 1e-3.

Small scale uses the embedded digits dataset (8x8, 1 channel, 1,437 training images), nets with a
quarter of the paper's filters, batch 16, 5 seeds and 6 epochs, so a whole preset runs in minutes
on a laptop CPU and the measures are not saturated; the reasons for each setting are next to
SMALL_RECIPES below and in docs/reproducing.md. Any setting can be overridden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from learnscope.experiments.execution import execute, plan, run_identity
from learnscope.experiments.specs import (
    PROBE_REGISTRY,
    PROBES,
    RunSpec,
    make_probe,
    register_probe,
)
from learnscope.registry import Registry

SCALES = ("small", "paper")

# Equi-separation grids. A depth is the reference's `layer_num` L: its GFNN has an input block
# plus L blocks of Linear-BN-ReLU, i.e. L + 1 hidden blocks (models option depth=L + 1) and
# L + 2 Linear layers with the classifier; separation is measured after each of the L + 1 blocks.
EQUISEP_DEPTHS = (2, 6, 18)
EQUISEP_OPTIMIZERS = (  # (optimizer, lr), the reference's run_experiments.sh ("optimization")
    ("sgd", 0.3), ("sgd", 0.03), ("sgd", 0.01),
    ("momentum", 0.3), ("momentum", 0.01), ("momentum", 0.001),
    ("adam", 3e-3), ("adam", 1e-3), ("adam", 3e-4),
)
# The reference pairs one lr per optimizer with each depth (run_experiments.sh); `equisep` runs
# these pairs, `all_lrs=True` (CLI --all-lrs) every setting above at every depth. A depth not in
# this table has no reference lr: it gets every setting.
EQUISEP_REFERENCE_LRS = {
    2: {"sgd": 0.3, "momentum": 0.3, "adam": 3e-3},
    6: {"sgd": 0.03, "momentum": 0.01, "adam": 1e-3},
    18: {"sgd": 0.01, "momentum": 0.001, "adam": 3e-4},
}
EQUISEP_DEPTH_SWEEP = tuple(range(1, 9))
EQUISEP_DEPTH_LRS = (1e-3,)  # the reference sweeps Adam over 3e-5 1e-4 3e-4 1e-3 3e-3 per depth
EQUISEP_WIDTH = 100
EQUISEP_PER_CLASS = 100
# dataset keys of the reference: 10x10 MNIST, Fashion-MNIST, CIFAR-10 (resized when loaded)
EQUISEP_DATASETS = {"cm": "mnist", "cfm": "fashion-mnist", "cc": "cifar10"}
# CIFAR-10's green channel alone at 10x10, the input the reference's GFNN takes from `cc`
EQUISEP_GREEN = "ccg"
EQUISEP_EPOCHS = {"small": 200, "paper": 600}
EQUISEP_SCHEDULE = "every-epoch 10; end"
ENTROPYCURVE_FAMILIES = ("resnet", "convnet", "toynet")  # Figure 2's nets, at 1-5 blocks/stage


# Small scale (digits, 8x8, 1,437 training samples). The settings are chosen so that the measures
# say something (see docs/reproducing.md for what they show and the time they take):
# - a quarter of the paper's filters (ResNet-20: 4/8/16, ToyNet: 8): at full width nearly every
#   evaluation of the 2x2 and 4x4 stages has its own pattern (distinct/E 0.97-1.0), so entropy
#   sits at its cap and every pattern changes at every update;
# - batch 16 (90 updates per epoch), so early points are early in relative terms: the paper's
#   "after 8 and 40 updates" are 0.02 and 0.1 of a CIFAR-10 epoch, here `epochs 0.02 0.1`
#   (updates 2 and 9);
# - one-cycle keeps the paper's doubled batch (32) and warms up for 1.2 epochs (10% of 6 epochs
#   at batch 256 peaked after 3 updates and ended at chance);
# - cyclic 0.1, FixUp 0.05 and the one-cycle peak 0.4 are half the paper's values: tried first
#   and they train; the paper's values were not tried at this scale.
SMALL_WIDTH_MULTIPLIER = 0.25
SMALL_BATCH = 16
SMALL_EARLY_EPOCHS = (0.02, 0.1)  # the paper's 8 and 40 updates of a 390-update epoch
SMALL_RECIPES: dict[str, dict[str, Any]] = {
    "multistep": {"batch_size": SMALL_BATCH},
    "fixup": {"batch_size": SMALL_BATCH, "lr": 0.05},
    "pyramid": {"batch_size": SMALL_BATCH},
    "cyclic": {"batch_size": SMALL_BATCH, "lr": 0.1, "cycle_epochs_up": 1},
    "onecycle": {"batch_size": 2 * SMALL_BATCH, "lr": 0.4, "warmup_fraction": 0.2},
}
SMALL_EPOCHS = 6
SMALL_EARLY_STEPS = 150  # Figure 1: every update of the first 1.7 epochs (paper: 3,000, 7.7)
SMALL_SEEDS = 5  # entropycurve: mean and band over 5 seeds (paper: 25)


def _scale_settings(scale: str) -> dict[str, Any]:
    if scale == "paper":
        return {"dataset": "cifar10", "data_options": {"augment": True, "normalize": True},
                "model_options": {}, "seeds": None, "probe_batch": 128, "recipes": {}}
    return {"dataset": "digits", "data_options": {"normalize": True, "val_fraction": 0.0},
            "model_options": {"in_channels": 1, "image_size": 8,
                              "width_multiplier": SMALL_WIDTH_MULTIPLIER},
            "seeds": None, "probe_batch": 512, "recipes": SMALL_RECIPES}


def _recipe_options(settings: dict[str, Any], recipe: str, **options: Any) -> dict[str, Any]:
    """The scale's settings of `recipe`, then `options`."""
    return {**settings["recipes"].get(recipe, {}), **options}


def _epoch_schedule_before_first_drop(recipe_options: dict[str, Any], default: int,
                                      early: str = "at 0 8 40") -> str:
    milestones = recipe_options.get("milestones", (default,))
    return f"{early}; epochs {milestones[0]}; end"


@dataclass(frozen=True)
class Preset:
    """An entry of PRESET_REGISTRY.

    expand(preset, scale, overrides) gives the preset's runs, popping the overrides it
    understands (expand applies the rest to every run); None for the presets that
    `learnscope run` runs itself, in one process and without RunSpecs (quickstart,
    trajectories), which therefore cannot be swept.
    """

    expand: Callable[[str, str, dict[str, Any]], list[RunSpec]] | None


#: Presets by name, in the order the CLI lists them (`learnscope run --help`).
PRESET_REGISTRY: Registry[Preset] = Registry("preset")


def register_preset(name: str, *aliases: str
                    ) -> Callable[[Callable[..., list[RunSpec]]], Callable[..., list[RunSpec]]]:
    """Decorator registering `expand(preset, scale, overrides) -> list[RunSpec]` as preset
    `name`: `expand(name)`, `learnscope sweep name` and `learnscope run name` then run it."""

    def decorator(function: Callable[..., list[RunSpec]]) -> Callable[..., list[RunSpec]]:
        PRESET_REGISTRY.add(name, Preset(function), *aliases)
        return function

    return decorator


PRESET_REGISTRY.add("quickstart", Preset(None))  # learnscope.experiments.quickstart


def sweepable() -> tuple[str, ...]:
    """The presets with runs to expand: those `learnscope sweep` takes."""
    return tuple(name for name, preset in PRESET_REGISTRY.items() if preset.expand is not None)


def run_only() -> tuple[str, ...]:
    """The presets that only `learnscope run` runs (one process, no RunSpecs)."""
    return tuple(name for name, preset in PRESET_REGISTRY.items() if preset.expand is None)


def expand(preset: str, scale: str = "small", **overrides: Any) -> list[RunSpec]:
    """The runs of `preset` at `scale`, with overrides applied to every run.

    Overrides: dataset, seeds (list), models (list of registry names), epochs, steps (max
    updates), schedule (text, see learnscope.train.parse), device, blocks (list, entropycurve),
    and any RunSpec field. equisep and equisep-depth also take: depths (list of the reference's
    layer_num), optimizers (subset of sgd, momentum, adam; equisep), all_lrs (equisep: True runs
    every optimizer's three lrs at every depth; default: the reference's lr of each optimizer
    for depths 2, 6, 18, see EQUISEP_REFERENCE_LRS), lrs (list; equisep-depth),
    width, per_class, imbalance (long-tailed training set, largest / smallest class; the probe
    then uses the imbalanced Σ definitions), probe_batch, fit_from_input (True: fit the law over
    the input and every layer, `fit_law(first=0)` as the reference's code does; the run names
    end in "-fitinput"). Their datasets: digits, mnist1d, any registry name, or cm / cfm / cc
    (MNIST, Fashion-MNIST, CIFAR-10 resized to 10x10), ccg (CIFAR-10's green channel at 10x10,
    the reference's GFNN input).
    """
    if preset not in PRESET_REGISTRY:
        raise PRESET_REGISTRY.unknown(preset, known=[*sweepable()])
    name = PRESET_REGISTRY.canonical(preset)
    expand_preset = PRESET_REGISTRY[name].expand
    if expand_preset is None:
        raise ValueError(f"preset {name!r} has no runs to expand: {' and '.join(run_only())} "
                         f"run with `learnscope run`; presets with runs: {', '.join(sweepable())}")
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; use 'small' or 'paper'")
    specs = expand_preset(name, scale, overrides)
    epochs = overrides.pop("epochs", None)
    return [_override(s, epochs=epochs, **overrides) for s in specs]


@dataclass(frozen=True)
class _Setup:
    """What the activation-pattern presets share at one scale: settings, data and probe."""

    scale: str
    settings: dict[str, Any]
    dataset: str
    data_options: dict[str, Any]
    image_options: dict[str, Any]
    probe: dict[str, Any]

    @property
    def small(self) -> bool:
        return self.scale == "small"

    def options_of(self, net: str) -> dict[str, Any]:
        # in_channels / image_size are options of the conv families only (mlp and small_cnn
        # take none of them; execute gives every model its input size); at small scale the
        # conv families are narrower, whatever the data
        if not _is_conv_family(net):
            return {}
        return {**self.image_options,
                **({"width_multiplier": SMALL_WIDTH_MULTIPLIER} if self.small else {})}

    def recipe(self, recipe: str, **options: Any) -> dict[str, Any]:
        return _recipe_options(self.settings, recipe, **options)


def _setup(scale: str, overrides: dict[str, Any]) -> _Setup:
    settings = _scale_settings(scale)
    dataset = overrides.pop("dataset", settings["dataset"])
    return _Setup(scale, settings, dataset, dict(settings["data_options"]),
                  dict(settings["model_options"]) if dataset == "digits" else {},
                  {"batch_size": settings["probe_batch"], "batchnorm": "train"})


@register_preset("early")
def _expand_early(preset: str, scale: str, overrides: dict[str, Any]) -> list[RunSpec]:
    setup = _setup(scale, overrides)
    seeds = overrides.pop("seeds", [0])
    nets = overrides.pop("models", ["resnet20", "convnet20", "toynet20"])
    steps = overrides.pop("steps", SMALL_EARLY_STEPS if setup.small else 3000)
    recipe_options = setup.recipe("multistep")
    return [RunSpec(preset, f"{preset}-{scale}-{net}-s{seed}", net, setup.options_of(net),
                    setup.dataset, setup.data_options, "multistep", recipe_options, seed, steps,
                    "every 1", setup.probe)
            for net in nets for seed in seeds]


@register_preset("entropycurve")
def _expand_entropycurve(preset: str, scale: str, overrides: dict[str, Any]) -> list[RunSpec]:
    setup = _setup(scale, overrides)
    seeds = overrides.pop("seeds", list(range(SMALL_SEEDS if setup.small else 25)))
    nets = overrides.pop("models", ["resnet", "convnet", "toynet"])
    blocks = overrides.pop("blocks", [1, 2, 3, 4, 5])
    _check_entropycurve(nets, blocks)
    recipe_options = setup.recipe(
        "multistep", **({"epochs": SMALL_EPOCHS, "milestones": (3, 5)} if setup.small else {}))
    early = ("at 0; epochs " + " ".join(f"{e:g}" for e in SMALL_EARLY_EPOCHS) if setup.small
             else "at 0 8 40")
    schedule = _epoch_schedule_before_first_drop(recipe_options, 100, early)
    return [RunSpec(preset, f"{preset}-{scale}-{name}-s{seed}", name, setup.options_of(name),
                    setup.dataset, setup.data_options, "multistep", recipe_options, seed, None,
                    schedule, setup.probe)
            for net in nets for n in blocks for name in [f"{net}{6 * n + 2}"] for seed in seeds]


@register_preset("methods")
def _expand_methods(preset: str, scale: str, overrides: dict[str, Any]) -> list[RunSpec]:
    setup = _setup(scale, overrides)
    seeds = overrides.pop("seeds", [0])
    epochs = {"epochs": SMALL_EPOCHS, "milestones": (3, 5)} if setup.small else {}
    short = {"epochs": SMALL_EPOCHS} if setup.small else {}
    variants: list[tuple[str, str, dict, str, dict]] = []
    for net in overrides.pop("models", ["convnet20", "resnet20"]):
        variants += [
            (f"{net}-relu", net, {"activation": "relu"}, "multistep",
             setup.recipe("multistep", **epochs)),
            (f"{net}-prelu", net, {"activation": "prelu"}, "multistep",
             setup.recipe("multistep", **epochs)),
            (f"{net}-lrelu", net, {"activation": "lrelu"}, "multistep",
             setup.recipe("multistep", **epochs)),
            (f"{net}-cyclic", net, {}, "cyclic", setup.recipe("cyclic", **short)),
            (f"{net}-onecycle", net, {}, "onecycle", setup.recipe("onecycle", **short)),
        ]
    variants += [("fixup_resnet20", "fixup_resnet20", {}, "fixup", setup.recipe("fixup", **epochs)),
                 ("pyramidnet20", "pyramidnet20", {}, "pyramid", setup.recipe("pyramid", **epochs))]
    return [RunSpec(preset, f"{preset}-{scale}-{label}-s{seed}", net,
                    {**setup.options_of(net), **options}, setup.dataset, setup.data_options,
                    recipe, recipe_options, seed, None, "every-epoch 1; end", setup.probe,
                    since_final=True)
            for label, net, options, recipe, recipe_options in variants for seed in seeds]


def _is_conv_family(net: str) -> bool:
    """Whether `net` is a conv family of the registry (resnet20...), not a model with a fixed
    name (mlp, small_cnn, fnn, or one registered with `models.register`)."""
    from learnscope.models import MODELS

    return net not in MODELS


def _check_entropycurve(families: list[str], blocks: list[int]) -> None:
    """entropycurve's models are families whose depth it varies (blocks per stage), each once."""
    wrong = [f for f in families if f not in ENTROPYCURVE_FAMILIES]
    if wrong:
        raise ValueError(f"entropycurve's models are families {ENTROPYCURVE_FAMILIES}, whose "
                         f"depth it varies with blocks (blocks per stage); got {wrong}")
    bad = [b for b in blocks if isinstance(b, bool) or not isinstance(b, int) or b < 1]
    for name, values in (("models", families), ("blocks", blocks)):
        if len(set(values)) < len(values):
            raise ValueError(f"entropycurve's {name} {values} repeat a value; give each once")
    if bad:
        raise ValueError(f"entropycurve's blocks (per stage) must be ints >= 1, got {bad}")


def _equisep_data(key: str, per_class: int | None, imbalance: float | None
                  ) -> tuple[str, dict[str, Any], int | None]:
    """(registry dataset, data options, image size) for an equisep dataset key."""
    options: dict[str, Any] = {"per_class": per_class, "normalize": True, "val_fraction": 0.0}
    if imbalance is not None:
        options["imbalance"] = imbalance
    if key in EQUISEP_DATASETS:
        return EQUISEP_DATASETS[key], {**options, "resize": 10}, 10
    if key == EQUISEP_GREEN:  # the reference's GFNN input on CIFAR-10: x[:, 1], 100 values
        return "cifar10", {**options, "resize": 10, "channels": [1]}, 10
    return key, options, 8 if key == "digits" else None


@register_preset("equisep-depth")
@register_preset("equisep")
def _expand_equisep(preset: str, scale: str, overrides: dict[str, Any]) -> list[RunSpec]:
    """The equisep grids; pops the overrides it understands from `overrides`."""
    from learnscope.models import flattens_input
    from learnscope.train.recipes import EQUISEP_OPTIMIZERS as OPTIMIZER_OPTIONS

    key = overrides.pop("dataset", "digits" if scale == "small" else "cm")
    per_class = overrides.pop("per_class", EQUISEP_PER_CLASS)
    imbalance = overrides.pop("imbalance", None)
    dataset, data_options, image_size = _equisep_data(key, per_class, imbalance)
    seeds = overrides.pop("seeds", [0])
    nets = overrides.pop("models", ["fnn"])
    width = overrides.pop("width", EQUISEP_WIDTH)
    epochs = EQUISEP_EPOCHS[scale]
    probe = {"batchnorm": "train", "balanced": imbalance is None,
             "batch_size": overrides.pop("probe_batch", 4096)}
    # the reference fits the law over the input and every layer (its code's layer 0 is the
    # input); the default fits the layers after the input only
    fit_from_input = overrides.pop("fit_from_input", False)
    if not isinstance(fit_from_input, bool):
        raise ValueError(f"fit_from_input must be True or False, got {fit_from_input!r}")
    if fit_from_input:
        probe["fit_first"] = 0
    fit_label = "-fitinput" if fit_from_input else ""
    if preset == "equisep":
        depths = overrides.pop("depths", list(EQUISEP_DEPTHS))
        wanted = overrides.pop("optimizers", None)
        all_lrs = overrides.pop("all_lrs", False)
        if not isinstance(all_lrs, bool):
            raise ValueError(f"all_lrs must be True or False, got {all_lrs!r}")
        settings = [c for c in EQUISEP_OPTIMIZERS if wanted is None or c[0] in wanted]

        def combos_at(depth: int | None) -> list[tuple[str, float]]:
            paired = EQUISEP_REFERENCE_LRS.get(depth)  # type: ignore[arg-type]
            if all_lrs or paired is None:
                return settings
            return [(optimizer, lr) for optimizer, lr in settings if paired[optimizer] == lr]
    else:
        depths = overrides.pop("depths", list(EQUISEP_DEPTH_SWEEP))
        adam = [("adam", lr) for lr in overrides.pop("lrs", list(EQUISEP_DEPTH_LRS))]

        def combos_at(depth: int | None) -> list[tuple[str, float]]:
            return adam
    bad = sorted({d for d in depths if not isinstance(d, int) or d < 0})
    if bad:
        raise ValueError(f"depths must be ints >= 0 (the reference's layer_num), got {bad}")
    specs: list[RunSpec] = []
    for net in nets:
        flat = flattens_input(net)
        for depth in depths if flat else [None]:
            options: dict[str, Any] = {}
            if flat:
                options = {"depth": depth + 1, "width": width}
            elif _is_conv_family(net) and image_size is not None:
                options = {"image_size": image_size}
            label = f"{net}-L{depth}" if flat else net
            for optimizer, lr in combos_at(depth):
                if optimizer not in OPTIMIZER_OPTIONS:
                    raise ValueError(f"unknown optimizer {optimizer!r}; use "
                                     f"{', '.join(OPTIMIZER_OPTIONS)}")
                recipe = {**OPTIMIZER_OPTIONS[optimizer], "lr": lr, "epochs": epochs}
                for seed in seeds:
                    specs.append(RunSpec(
                        preset,
                        f"{preset}-{scale}-{key}-{label}-{optimizer}-lr{lr:g}-s{seed}{fit_label}",
                        net, options, dataset, dict(data_options), "equisep", recipe, seed,
                        None, EQUISEP_SCHEDULE, dict(probe), probe="separation"))
    return specs


def _override(spec: RunSpec, *, epochs: int | None = None, **overrides: Any) -> RunSpec:
    if epochs is not None:
        recipe_options = {**spec.recipe_options, "epochs": epochs}
        if "milestones" in recipe_options:  # keep the milestones inside the shortened run
            recipe_options["milestones"] = tuple(
                max(1, round(m * epochs / spec.recipe_options.get("epochs", m * 2)))
                for m in recipe_options["milestones"])
        spec = replace(spec, recipe_options=recipe_options)
    if "steps" in overrides:
        overrides["max_steps"] = overrides.pop("steps")
    known = set(asdict(spec))
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown override(s) {unknown}; settings: {sorted(known)}")
    return replace(spec, **overrides)


PRESET_REGISTRY.add("trajectories", Preset(None))  # learnscope.trajectory.cli
#: The presets with runs (`learnscope sweep` takes them), as registered by this module.
PRESETS = sweepable()

_make_probe = make_probe  # the name older code uses
__all__ = [  # what this module offers, re-exports from specs and execution included
    "PRESETS", "PRESET_REGISTRY", "PROBES", "PROBE_REGISTRY", "SCALES", "RunSpec", "execute",
    "expand", "plan", "register_preset", "register_probe", "run_identity", "run_only",
    "sweepable",
]
