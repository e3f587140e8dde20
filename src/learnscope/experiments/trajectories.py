"""The weight-trajectory experiment: several networks traced through weight space, in 2-D.

After the reference project (seeds/003: networks trained on MNIST from scratch against networks
pre-trained on Omniglot, snapshots projected by PCA / SOM / autoencoder / t-SNE):

1. N networks (seeds seed, seed+1, ...) - an MLP of `depth` hidden layers of `width` units - are
   trained on task B (`train_on`) for `iterations` epochs; the Weights probe snapshots their
   parameters every `snapshot_every` updates (and at the end) and scores each snapshot on B's
   training and test sets. Each network is a run of experiment "trajectories" in the store.
2. With `setting="compare"` (the default) a second group of N networks is first pre-trained on
   task A (`pretrain`) for `pretrain_iterations` epochs, then trained on B exactly like the first
   group; weights whose name and shape agree are carried over (see learnscope.train.transfer).
   `setting="scratch"` or `"pretrained"` runs one group only.
3. One projection (`projection`, fit on all networks or on the first only) maps every snapshot
   to 2-D; a score landscape is computed under the trajectories; the map and the fitted
   projection are saved in a map run, which `learnscope show RUN` redraws without refitting.

Offline defaults: A = digits 0-4, B = digits 5-9 (sklearn's real handwritten digits, labels
relabelled 0-4). A = "mnist1d" works too (its 40-value inputs and 10 classes do not fit the
digits net's first and last layer, which are then re-initialised). The reference's setting is
A = "omniglot", B = "mnist", for which both datasets must be present locally.

Network runs are named from the settings that shape training (not the projection), so running
the same command again skips the trained networks, resumes unfinished ones, and only refits
the projection when the projection settings changed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

EXPERIMENT = "trajectories"
SETTINGS = ("compare", "scratch", "pretrained")
TRACKS = ("all", "average-hidden", "layer:NAME", "first-layers:N")
LANDSCAPES = ("interpolate", "evaluate", "none")
SCORES = ("test_accuracy", "test_loss", "train_accuracy", "train_loss")
OPTIMIZERS = {"sgd": ("sgd", 0.0), "momentum": ("sgd", 0.9), "adam": ("adam", 0.0)}

#: Tasks by name: dataset and options of learnscope.data.load (inputs are flattened).
TASKS: dict[str, dict[str, Any]] = {
    "digits": {"dataset": "digits"},
    "digits-0-4": {"dataset": "digits", "classes": [0, 1, 2, 3, 4]},
    "digits-5-9": {"dataset": "digits", "classes": [5, 6, 7, 8, 9]},
    "mnist1d": {"dataset": "mnist1d"},
    "mnist": {"dataset": "mnist"},
    "fashion-mnist": {"dataset": "fashion-mnist"},
    "omniglot": {"dataset": "omniglot", "resize": 28},
}

#: Settings that change what the networks learn; the network run names hash these.
_TRAINING = ("iterations", "depth", "width", "activation", "optimizer", "lr", "batch_size",
             "snapshot_every", "pretrain", "pretrain_iterations", "train_on", "seed", "track",
             "dtype")


@dataclass(frozen=True)
class TrajectorySettings:
    """Everything the experiment needs; the defaults are the reference's (10 iterations, 3
    networks, autoencoder) on the offline digits tasks."""

    networks: int = 3
    iterations: int = 10
    depth: int = 2
    width: int = 64
    activation: str = "relu"
    optimizer: str = "sgd"
    lr: float | None = None  # sgd 0.1, momentum 0.05, adam 1e-3
    batch_size: int = 64
    snapshot_every: int = 4
    projection: str = "autoencoder"
    fit_on: str = "all"
    track: str = "all"
    setting: str = "compare"
    pretrain: str = "digits-0-4"
    pretrain_iterations: int = 10
    train_on: str = "digits-5-9"
    landscape: str = "interpolate"
    resolution: int = 40
    score: str = "test_accuracy"
    dtype: str = "float32"
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("networks", "iterations", "depth", "width", "batch_size", "snapshot_every",
                     "resolution"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.pretrain_iterations < 0:
            raise ValueError(f"pretrain_iterations must be >= 0, got {self.pretrain_iterations}")
        if self.resolution < 2:
            raise ValueError(f"resolution must be >= 2 grid points, got {self.resolution}")
        for name, allowed in (("setting", SETTINGS), ("landscape", LANDSCAPES),
                              ("score", SCORES), ("optimizer", tuple(OPTIMIZERS)),
                              ("fit_on", ("all", "first"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got "
                                 f"{getattr(self, name)!r}")
        for name in ("pretrain", "train_on"):
            if getattr(self, name) not in TASKS:
                raise ValueError(f"{name} must be one of {', '.join(TASKS)}; got "
                                 f"{getattr(self, name)!r}")
        probe_options(self.track)  # raises on a bad track
        from learnscope.trajectory.projections import make_projection

        make_projection(self.projection)  # raises on an unknown projection name
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else {"sgd": 0.1, "momentum": 0.05,
                                                    "adam": 1e-3}[self.optimizer]

    def groups(self) -> list[str]:
        return ["scratch", "pretrained"] if self.setting == "compare" else [self.setting]

    def training_settings(self) -> dict[str, Any]:
        """The settings that shape training (the learning rate resolved)."""
        chosen = {name: getattr(self, name) for name in _TRAINING}
        chosen["lr"] = self.learning_rate
        return chosen

    def training_key(self) -> str:
        """Short hash of the settings that shape training (network run names use it)."""
        text = json.dumps(self.training_settings(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    def map_key(self) -> str:
        """Short hash of everything, for the map run's name."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]


def probe_options(track: str) -> dict[str, Any]:
    """Weights probe options for a --track value: all, average-hidden, layer:NAME,
    first-layers:N."""
    if track == "all":
        return {}
    if track == "average-hidden":
        return {"average_hidden": True}
    kind, _, value = track.partition(":")
    if kind == "layer" and value:
        return {"layer": value}
    if kind == "first-layers" and value.isdigit() and int(value) >= 1:
        return {"first_layers": int(value)}
    raise ValueError(f"track must be one of {', '.join(TRACKS)} (e.g. layer:features.0, "
                     f"first-layers:2); got {track!r}")


@dataclass(frozen=True)
class Network:
    """One network of the experiment: its group, index, seed and run name."""

    group: str
    index: int
    seed: int
    name: str


def plan(settings: TrajectorySettings) -> list[Network]:
    """The networks the settings ask for, in plot order (scratch first)."""
    key = settings.training_key()
    return [Network(group, i, settings.seed + i, f"{EXPERIMENT}-{key}-{group}-net{i}")
            for group in settings.groups() for i in range(settings.networks)]


def map_name(settings: TrajectorySettings, trajectory: str | None = None) -> str:
    suffix = f"-{trajectory}" if trajectory else ""
    return f"{EXPERIMENT}-{settings.training_key()}-map-{settings.map_key()}{suffix}"


def _load_task(task: str, seed: int = 0):
    import learnscope as ls

    options = dict(TASKS[task])
    dataset = options.pop("dataset")
    return ls.data.load(dataset, flatten=True, val_fraction=0.0, seed=seed, **options)


def _recipe(settings: TrajectorySettings, epochs: int):
    from learnscope.train import recipes

    optimizer, momentum = OPTIMIZERS[settings.optimizer]
    return recipes.get("adam", optimizer=optimizer, momentum=momentum,
                       lr=settings.learning_rate, epochs=epochs,
                       batch_size=settings.batch_size, weight_decay=0.0, scheduler="constant")


def _model(settings: TrajectorySettings, splits: Any, seed: int) -> torch.nn.Module:
    import learnscope as ls

    torch.manual_seed(seed)
    return ls.models.create("mlp", in_features=math.prod(splits.input_shape),
                            hidden=[settings.width] * settings.depth,
                            num_classes=splits.num_classes, activation=settings.activation)


def train_network(settings: TrajectorySettings, network: Network, store: str | Path,
                  *, splits: Any = None, pretrain_splits: Any = None) -> tuple[str, str]:
    """Train one network (pre-training first for the pretrained group); (run id, status).

    The network's run is claimed by name and settings fingerprint
    (learnscope.experiments.identity): one finished with the same settings is reused
    ("skipped"), an unfinished one resumes from its checkpoint (pre-training is deterministic
    and only sets the starting weights, which the checkpoint then replaces), one that another
    live process trains is left to it ("busy").
    """
    import learnscope as ls
    from learnscope.experiments.identity import claim, with_version

    identity = with_version({"experiment": EXPERIMENT, "group": network.group,
                             "index": network.index, "network_seed": network.seed,
                             "training": settings.training_settings()})
    with ls.store.open(store) as s:
        decision = claim(s, network.name, identity, {"experiment": EXPERIMENT},
                         experiment=EXPERIMENT)
    if decision.action == "reuse":
        return decision.run_id, "skipped"
    if decision.action == "busy":
        return decision.run_id, "busy"
    try:
        return _train_claimed(settings, network, store, decision, splits, pretrain_splits)
    except KeyboardInterrupt:
        with ls.store.open(store) as s:
            s.release_run(decision.run_id)
        raise
    except BaseException as error:
        with ls.store.open(store) as s:
            if s.run(decision.run_id)["status"] in ("running", "interrupted"):
                s.set_status(decision.run_id, "failed", error=f"{type(error).__name__}: {error}")
        raise


def _train_claimed(settings: TrajectorySettings, network: Network, store: str | Path,
                   decision: Any, splits: Any, pretrain_splits: Any) -> tuple[str, str]:
    import learnscope as ls
    from learnscope.train import parse
    from learnscope.train.trainer import train
    from learnscope.train.transfer import transfer_weights

    resume = decision.run_id
    splits = splits if splits is not None else _load_task(settings.train_on)
    model = _model(settings, splits, network.seed)
    transfer = None
    if network.group == "pretrained":
        pretrain_splits = (pretrain_splits if pretrain_splits is not None
                           else _load_task(settings.pretrain))
        source = _model(settings, pretrain_splits, network.seed)
        if settings.pretrain_iterations:
            train(source, pretrain_splits.train, _recipe(settings, settings.pretrain_iterations),
                  seed=network.seed, device=settings.device)
        transfer = transfer_weights(source, model)
    recipe = _recipe(settings, settings.iterations)
    steps_per_epoch = -(-len(splits.train) // recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    probe = ls.Weights(train=splits.measure, test=splits.test, dtype=settings.dtype,
                       **probe_options(settings.track))
    config = {"experiment": EXPERIMENT, "group": network.group, "index": network.index,
              "network_seed": network.seed, "settings": asdict(settings),
              "training_key": settings.training_key(),
              "transfer": None if transfer is None else {"copied": transfer.copied,
                                                         "kept": transfer.kept}}
    scope = ls.Scope(model, [probe], parse(f"every {settings.snapshot_every}; end"), store,
                     name=decision.name, experiment=EXPERIMENT, config=config,
                     total_steps=total, steps_per_epoch=steps_per_epoch, resume=resume)
    result = train(model, splits.train, recipe, scope=scope, test_set=splits.test,
                   seed=network.seed, device=settings.device,
                   resume=decision.action == "resume")
    scope.finish(result.status)
    return scope.run_id, result.status


# ---------------------------------------------------------------------- projecting


def build_map(
    store: Any,
    runs: Sequence[str],
    *,
    projection: str = "autoencoder",
    projection_options: dict[str, Any] | None = None,
    fit_on: str = "all",
    trajectory: str | None = None,
    landscape: str = "interpolate",
    resolution: int = 40,
    score: str = "test_accuracy",
    groups: Sequence[str] | None = None,
    random_state: int = 0,
    model_factory: Callable[[], torch.nn.Module] | None = None,
    landscape_data: Any = None,
) -> tuple[Any, Any]:
    """Project the snapshots of `runs` (one network each) to 2-D; (TrajectoryMap, projection).

    Args:
        store: an open Store.
        runs: run ids / names of the networks, in plot order (fit_on="first" fits on runs[0]).
        projection, projection_options: see learnscope.trajectory.projections.make_projection.
        trajectory: which stored trajectory (default: the runs' only one).
        landscape: "interpolate" (scores interpolated over the plane), "evaluate" (the network
            evaluated at every grid point, decoded back to weights by the projection's
            inverse_transform; needs trajectory "all", `model_factory` and `landscape_data`)
            or "none".
        score: which score colours the points and the landscape.
        groups: group label per network (default: the runs' config "group", else "").
    """
    from learnscope.engine.evaluation import evaluate
    from learnscope.trajectory.maps import TrajectoryMap, score_landscape
    from learnscope.trajectory.projections import make_projection, project_trajectories

    if not runs:
        raise ValueError("build_map needs at least one run")
    records = [store.run(ref) for ref in runs]
    series = [store.snapshots(r["id"], trajectory) for r in records]
    names = {s.trajectory for s in series}
    if len(names) > 1:
        raise ValueError(f"the runs' trajectories differ ({sorted(names)}); pass trajectory=")
    sizes = {s.size for s in series}
    if len(sizes) > 1:
        raise ValueError(
            f"the runs' snapshots have different sizes {sorted(sizes)}: one projection needs "
            "networks of one architecture"
        )
    estimator = make_projection(projection, random_state=random_state,
                                **(projection_options or {}))
    coords = project_trajectories(estimator, [s.array() for s in series], fit_on=fit_on)
    scores: dict[str, list[np.ndarray]] = {}
    for name in SCORES:
        per_network = []
        for record, s in zip(records, series, strict=True):
            frame = store.metrics(record["id"], probe=s.probe)
            frame = frame[(frame["layer"] == "model") & (frame["measure"] == name)]
            by_step = dict(zip(frame["step"], frame["value"], strict=True))
            per_network.append(np.asarray([by_step.get(int(t), np.nan) for t in s.steps],
                                          dtype=np.float64))
        if any(np.isfinite(v).any() for v in per_network):
            scores[name] = per_network
    if groups is None:
        groups = [str(r["config"].get("user", {}).get("group", "")) for r in records]
    land = None
    if landscape != "none":
        if score not in scores:
            raise ValueError(f"no {score!r} scores were recorded; scores there: "
                             f"{sorted(scores) or 'none'} (give the Weights probe train= / test=)")
        all_coords = np.concatenate(coords)
        all_scores = np.concatenate(scores[score])
        if landscape == "evaluate":
            if model_factory is None or landscape_data is None:
                raise ValueError("landscape='evaluate' needs model_factory and landscape_data")
            if series[0].trajectory != "all":
                raise ValueError("landscape='evaluate' needs snapshots of all parameters "
                                 f"(trajectory 'all'), got {series[0].trajectory!r}")
            if not hasattr(estimator, "inverse_transform"):
                raise ValueError(f"projection {projection!r} cannot map points back to weights "
                                 "(no inverse_transform); use landscape='interpolate'")
            net = model_factory()
            split, _, measure = score.partition("_")
            data = landscape_data[split]

            def network_score(weights: np.ndarray) -> float:
                vector = torch.as_tensor(np.asarray(weights, dtype=np.float32))
                torch.nn.utils.vector_to_parameters(vector, net.parameters())
                return evaluate(net, data)[measure]

            land = score_landscape(all_coords, all_scores, resolution=resolution,
                                   method="evaluate", decode=estimator.inverse_transform,
                                   evaluate=network_score, score=score)
        else:
            land = score_landscape(all_coords, all_scores, resolution=resolution,
                                   method="interpolate", score=score)
    description = f"{projection} (fit on {'the first network' if fit_on == 'first' else 'all'})"
    axis_labels = None
    ratios = getattr(estimator, "explained_variance_ratio_", None)
    if ratios is not None and len(ratios) >= 2:
        axis_labels = [f"PC{k + 1} ({100 * ratios[k]:.0f}% of the variance)" for k in range(2)]
    tmap = TrajectoryMap(
        networks=display_names([r["name"] for r in records]), runs=[r["id"] for r in records],
        groups=list(groups), steps=[s.steps.astype(np.int64) for s in series],
        coords=[np.asarray(c, dtype=np.float64) for c in coords], scores=scores,
        trajectory=series[0].trajectory, projection=description, landscape=land,
        meta={"projection": projection, "projection_options": projection_options or {},
              "fit_on": fit_on, "random_state": random_state, "score": score,
              "landscape": landscape, "resolution": resolution,
              **({"axis_labels": axis_labels} if axis_labels else {})},
    )
    return tmap, estimator


def display_names(names: Sequence[str]) -> list[str]:
    """Run names without their common "-"-separated prefix, for legends ("scratch-net0")."""
    if len(names) < 2:
        return list(names)
    parts = [name.split("-") for name in names]
    shared = 0
    while all(len(p) > shared + 1 and p[shared] == parts[0][shared] for p in parts):
        shared += 1
    shown = ["-".join(p[shared:]) for p in parts]
    return shown if len(set(shown)) == len(shown) else list(names)


def save_map_run(store: Any, name: str, tmap: Any, estimator: Any, *,
                 config: dict[str, Any], resume: str | None = None) -> str:
    """Write `tmap` and the fitted projection into a (new or resumed) map run; its id."""
    from learnscope.trajectory.maps import MAP_PROBE, map_folder, map_rows, save_map
    from learnscope.trajectory.projections import save_projection

    if resume is None:
        run_id = store.create_run(name, {"kind": "trajectory-map", **config},
                                  experiment=EXPERIMENT)
    else:
        run_id = resume
        store.set_status(run_id, "running")
    save_projection(estimator, map_folder(store, run_id) / "projection.joblib")
    save_map(store, run_id, tmap)  # last: a map file means the run's results are complete
    rows = [("map", -1, "networks", float(len(tmap.networks))),
            ("map", -1, "snapshots", float(sum(len(s) for s in tmap.steps)))]
    final = tmap.scores.get(tmap.meta.get("score", ""), [])
    rows += [(network, i, f"final_{tmap.meta['score']}", float(values[-1]))
             for i, (network, values) in enumerate(zip(tmap.networks, final, strict=True))]
    rows += map_rows(tmap)  # path length and start-to-end distance of every network
    store.write_measurement(run_id, 0, None, MAP_PROBE, rows)
    store.set_status(run_id, "finished")
    return run_id


def project_runs(store_path: str | Path, runs: Sequence[str], *, name: str | None = None,
                 **options: Any) -> str:
    """Fit a projection over existing runs and save it as a new map run; its id.

    `options` go to `build_map` (projection, fit_on, trajectory, landscape="interpolate" or
    "none", resolution, score, random_state).
    """
    import learnscope as ls

    if options.get("landscape") == "evaluate":
        raise ValueError("landscape='evaluate' needs the networks' model and data; it is "
                         "available in `learnscope run trajectories`; use 'interpolate' here")
    with ls.store.open(store_path) as store:
        tmap, estimator = build_map(store, runs, **options)
        label = name or f"{EXPERIMENT}-map-{options.get('projection', 'autoencoder')}"
        return save_map_run(store, label, tmap, estimator,
                            config={"members": tmap.runs, "options": _jsonable(options)})


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(options, default=str))


# ---------------------------------------------------------------------- the whole experiment


def run_experiment(settings: TrajectorySettings, store: str | Path,
                   on_network: Callable[[Network, str, str], None] | None = None) -> list[str]:
    """Train (or skip / resume) every network, then project; the map run ids (one per
    trajectory tracked)."""
    import learnscope as ls

    networks = plan(settings)
    splits = _load_task(settings.train_on)
    pretrain_splits = _load_task(settings.pretrain) if "pretrained" in settings.groups() else None
    run_ids = []
    for network in networks:
        run_id, status = train_network(settings, network, store, splits=splits,
                                       pretrain_splits=pretrain_splits)
        run_ids.append(run_id)
        if on_network is not None:
            on_network(network, run_id, status)
        if status == "busy":
            raise RuntimeError(
                f"network run {run_id} is being trained by another process; the map needs "
                "every network: run the same command again once that process has finished")
    map_ids = []
    with ls.store.open(store) as s:
        finished = [rid for rid in run_ids if s.run(rid)["status"] == "finished"]
        if not finished:
            raise RuntimeError("no network finished training (all diverged); lower --lr")
        trajectories = list(s.trajectories(finished[0])["trajectory"])
        for trajectory in trajectories:
            name = map_name(settings, trajectory if len(trajectories) > 1 else None)
            runs = s.runs()
            earlier = runs[runs["name"] == name]
            if not earlier.empty and earlier["status"].iloc[-1] == "finished":
                map_ids.append(str(earlier["id"].iloc[-1]))
                continue
            resume = str(earlier["id"].iloc[-1]) if not earlier.empty else None
            tmap, estimator = build_map(
                s, finished, projection=settings.projection, fit_on=settings.fit_on,
                trajectory=trajectory, landscape=settings.landscape,
                resolution=settings.resolution, score=settings.score,
                random_state=settings.seed,
                model_factory=lambda: _model(settings, splits, settings.seed),
                landscape_data={"train": splits.measure, "test": splits.test},
            )
            map_ids.append(save_map_run(
                s, name, tmap, estimator, resume=resume,
                config={"members": finished, "settings": asdict(settings)}))
    return map_ids


def settings_from(**options: Any) -> TrajectorySettings:
    """TrajectorySettings from keyword options; unknown names raise a TypeError listing them."""
    known = {f.name for f in fields(TrajectorySettings)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown trajectory setting(s) {unknown}; settings: {sorted(known)}")
    return replace(TrajectorySettings(), **options)
