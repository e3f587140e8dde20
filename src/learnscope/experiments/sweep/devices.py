"""Which device each local worker trains on, and how many workers a sweep starts."""

from __future__ import annotations


def cuda_device_count() -> int:
    """Number of CUDA GPUs torch sees here (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_device(device: str | None, cuda_count: int) -> None:
    """Raise ValueError when ``device`` is not ``auto`` or a device torch knows and has here."""
    if device is None or device == "auto":
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r} ({error}); use auto, cpu, cuda or "
                         "cuda:N") from None
    if parsed.type == "cuda":
        if cuda_count == 0:
            raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU here; "
                             "use --device auto or cpu")
        if parsed.index is not None and parsed.index >= cuda_count:
            raise ValueError(f"device {device!r} asked for, but torch sees {cuda_count} CUDA "
                             f"GPU(s) here (cuda:0..cuda:{cuda_count - 1})")


def assign_device(device: str | None, worker: int, cuda_count: int) -> str | None:
    """The device of local worker ``worker`` (0-based).

    ``"auto"``: ``cuda:{worker % cuda_count}`` with GPUs, else ``"cpu"``; ``"cuda"``: the same
    spread over the GPUs; any other device (``"cpu"``, ``"cuda:1"``, ...) is kept; None keeps
    each run's own device.
    """
    if device in ("auto", "cuda") and cuda_count > 0:
        return f"cuda:{worker % cuda_count}"
    if device == "auto":
        return "cpu"
    return device


def default_workers(device: str = "auto", cuda_count: int | None = None) -> int:
    """Workers when none are asked for: one per CUDA GPU when training on GPUs, else 2."""
    if device in ("auto", "cuda"):
        count = cuda_device_count() if cuda_count is None else cuda_count
        if count:
            return count
    return 2


# --------------------------------------------------------------------------- one run
