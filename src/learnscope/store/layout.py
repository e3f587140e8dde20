"""Where a store keeps its files: the one definition of the run-folder layout.

Everything here is a pure path computation: nothing is created, read or checked on disk
(creating folders is the writer's job). For a store ``runs/learnscope.db``::

    runs/learnscope.artifacts/                        artifacts_root(db_path)
        <run id>/                                     run_folder(root, run_id)
            checkpoint.pt                             CHECKPOINT_FILE (the trainer's)
            weights/step_<step:09d>.pt                weights_file(run_folder, step)
            <probe>/step_<step:09d>/                  measurement_folder(root, run, probe, step)
                <artifact name>.npz, manifest.json    artifact_file_name(name, suffix)
            <probe>/snapshots/<trajectory>/           snapshot_folder(root, run, probe, trajectory)
                chunk_<k:05d>.bin                     chunk_file(folder, k)
        plans/<experiment>.json                       plan_file(root, experiment)

Every name that comes from a user (run id, probe, artifact, trajectory, experiment) goes
through :func:`safe_component`, the one file-name sanitiser of learnscope.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

#: Characters kept in a file name besides ASCII letters and digits; every other one becomes
#: ``_`` (see :func:`safe_name`).
SAFE_PUNCTUATION = "_.-"

#: The trainer's checkpoint (model, optimizer, RNG states), in the run folder.
CHECKPOINT_FILE = "checkpoint.pt"

#: Folder of the weights saved at each measurement (``save_weights=True``), in the run folder.
WEIGHTS_FOLDER = "weights"

#: Glob pattern matching the files of :func:`weights_file`, in step order when sorted.
WEIGHTS_GLOB = "step_*.pt"

#: Folder of the experiments' plans, in the artifacts root.
PLANS_FOLDER = "plans"

#: Folder of a probe's weight snapshots, in its probe folder.
SNAPSHOTS_FOLDER = "snapshots"


def safe_name(text: str, *, keep: str = "") -> str:
    """``text`` with every character outside ``[A-Za-z0-9_.-]`` (and ``keep``) replaced by
    ``_``."""
    return re.sub(f"[^A-Za-z0-9{re.escape(SAFE_PUNCTUATION + keep)}]", "_", text)


def safe_component(text: str, *, keep: str = "") -> str:
    """:func:`safe_name` of ``text``, usable as one path component: ``""``, ``"."`` and
    ``".."`` become ``"_"``."""
    safe = safe_name(text, keep=keep)
    return "_" if safe in ("", ".", "..") else safe


def artifacts_root(db_path: Path) -> Path:
    """Folder for a store's large files: ``<db path without suffix>.artifacts``."""
    return db_path.with_name(db_path.with_suffix("").name + ".artifacts")


def run_folder(root: Path, run_id: str) -> Path:
    """Folder of one run's files (its checkpoint, saved weights, probes' artifacts)."""
    return root / safe_component(run_id)


def measurement_folder(root: Path, run_id: str, probe: str, step: int) -> Path:
    """Folder of the artifacts of one measurement: ``<run>/<probe>/step_<step:09d>``."""
    return run_folder(root, run_id) / safe_component(probe) / f"step_{step:09d}"


def artifact_file_name(name: str, suffix: str) -> str:
    """File name of the artifact ``name`` (a layer name such as ``"block1.relu#0"``)."""
    return safe_component(name, keep="#") + suffix


def trajectory_folder_name(trajectory: str) -> str:
    """File-system name of a trajectory's folder; distinct names never share a folder."""
    safe = safe_component(trajectory, keep="#")
    if safe == trajectory:
        return safe
    return f"{safe}-{hashlib.sha1(trajectory.encode()).hexdigest()[:8]}"


def snapshot_folder(root: Path, run_id: str, probe: str, trajectory: str) -> Path:
    """Folder of the chunk files of one trajectory of one probe of one run."""
    return (run_folder(root, run_id) / safe_component(probe) / SNAPSHOTS_FOLDER
            / trajectory_folder_name(trajectory))


def chunk_file(folder: Path, chunk: int) -> Path:
    """Chunk file number ``chunk`` of a trajectory's snapshot folder."""
    return folder / f"chunk_{chunk:05d}.bin"


def weights_folder(run_folder: Path) -> Path:
    """Folder of the weights saved at each measurement, in a run folder (or a trainer's
    checkpoint_dir); its files match :data:`WEIGHTS_GLOB`."""
    return run_folder / WEIGHTS_FOLDER


def weights_file(run_folder: Path, step: int) -> Path:
    """The model weights saved at ``step``, in a run folder (or a trainer's checkpoint_dir)."""
    return weights_folder(run_folder) / f"step_{step:09d}.pt"


def plans_folder(root: Path) -> Path:
    """Folder of the experiments' plans."""
    return root / PLANS_FOLDER


def plan_file(root: Path, experiment: str) -> Path:
    """The plan (run names and identities) recorded for ``experiment``."""
    return plans_folder(root) / f"{safe_component(experiment)}.json"
