"""Finding the piecewise-linear activation layers of any model and tapping their inputs.

Two kinds of layers are found while the model runs:
- modules (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ReLU6, nn.Hardtanh, or registered types), named by
  their module path ("layer1.0.relu");
- functional calls (torch.relu, F.relu, x.relu(), F.leaky_relu, F.prelu, F.hardtanh, F.relu6) made
  outside such modules, intercepted with a TorchFunctionMode and named by the module that made the
  call plus the call's order in it: "block1.relu#0" (first F.relu call inside `block1`), "relu#2"
  (third call in the top-level forward). A module applied several times in one forward pass (a
  shared nn.ReLU) gives one layer per application: "relu", "relu#1", ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from learnscope.engine.batches import unwrap_model

BreakpointsFn = Callable[[nn.Module], tuple[float, ...]]

_MODULE_BREAKPOINTS: dict[type[nn.Module], BreakpointsFn] = {
    nn.ReLU: lambda m: (0.0,),
    nn.LeakyReLU: lambda m: (0.0,),
    nn.PReLU: lambda m: (0.0,),
    nn.Hardtanh: lambda m: (float(m.min_val), float(m.max_val)),  # ReLU6 is a Hardtanh(0, 6)
}


def register_activation(module_type: type[nn.Module], breakpoints: BreakpointsFn) -> None:
    """Teach learnscope a piecewise-linear activation module type.

    Args:
        module_type: the nn.Module subclass.
        breakpoints: function of a module instance returning its increasing breakpoints, e.g.
            `lambda m: (0.0,)` for a ReLU-like unit (2 states) or `lambda m: (lo, hi)` (3 states).
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"register_activation needs an nn.Module subclass, got {module_type!r}")
    _MODULE_BREAKPOINTS[module_type] = breakpoints


def module_breakpoints(module: nn.Module) -> tuple[float, ...] | None:
    """The breakpoints of a supported activation module, or None if it is not one."""
    for cls in type(module).__mro__:
        if cls in _MODULE_BREAKPOINTS:
            return tuple(float(b) for b in _MODULE_BREAKPOINTS[cls](module))
    return None


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: float) -> float:
    if len(args) > index:
        return float(args[index])
    return float(kwargs.get(name, default))


# Functional forms: function -> (short name, breakpoints from the call's arguments).
_FUNCTIONAL: dict[Callable, tuple[str, Callable[[tuple, dict], tuple[float, ...]]]] = {}
for _fn in (torch.relu, torch.relu_, F.relu, F.relu_, torch.Tensor.relu, torch.Tensor.relu_):
    _FUNCTIONAL[_fn] = ("relu", lambda a, k: (0.0,))
for _fn in (F.leaky_relu, getattr(F, "leaky_relu_", None)):
    if _fn is not None:
        _FUNCTIONAL[_fn] = ("leaky_relu", lambda a, k: (0.0,))
for _fn in (F.prelu, torch.prelu):
    _FUNCTIONAL[_fn] = ("prelu", lambda a, k: (0.0,))
for _fn in (F.hardtanh, F.hardtanh_):
    _FUNCTIONAL[_fn] = (
        "hardtanh",
        lambda a, k: (_arg(a, k, 1, "min_val", -1.0), _arg(a, k, 2, "max_val", 1.0)),
    )
_FUNCTIONAL[F.relu6] = ("relu6", lambda a, k: (0.0, 6.0))

SUPPORTED_NAMES = "ReLU, LeakyReLU, PReLU, ReLU6, Hardtanh (modules or functional calls)"


# callback(name, z, breakpoints, kind)
TapCallback = Callable[[str, torch.Tensor, tuple[float, ...], str], None]


class _FunctionalTap(TorchFunctionMode):
    def __init__(self, tap: ActivationTap) -> None:
        super().__init__()
        self.tap = tap

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        spec = _FUNCTIONAL.get(func)
        if spec is not None and args and isinstance(args[0], torch.Tensor):
            self.tap._functional_call(spec[0], args[0], spec[1](args, kwargs))
        return func(*args, **kwargs)


class ActivationTap:
    """Calls `callback(name, z, breakpoints, kind)` with the input of every activation layer.

    Use as a context manager around forward passes of `model`. Inputs are handed over *before*
    the activation runs, so in-place activations are seen unmodified.

    Args:
        model: the model (hooks are removed on exit).
        callback: called once per layer per forward pass.
        functional: also intercept functional activation calls. Intercepting every torch call
            costs ~15% of a small conv net's forward time, so `stop_functional_if_unused()` lets
            a caller switch it off once a full forward pass has shown there are none.
    """

    def __init__(self, model: nn.Module, callback: TapCallback, *, functional: bool = True):
        self.model = model
        self.callback = callback
        self.functional = functional
        self._paths = {id(m): path for path, m in model.named_modules()}
        self._stack: list[nn.Module] = []
        self._call_counts: dict[tuple[str, str], int] = {}
        self._handles: list = []
        self._mode: _FunctionalTap | None = None
        self.functional_layers_seen = False

    def __enter__(self) -> ActivationTap:
        for path, module in self.model.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._enter_module))
            self._handles.append(module.register_forward_hook(self._leave_module))
            breakpoints = module_breakpoints(module)
            if breakpoints is not None:
                self._handles.append(
                    module.register_forward_pre_hook(self._module_hook(path, breakpoints))
                )
        if self.functional:
            self._mode = _FunctionalTap(self)
            self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._stop_functional(*exc)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _stop_functional(self, *exc) -> None:
        if self._mode is not None:
            self._mode.__exit__(*(exc or (None, None, None)))
            self._mode = None

    def stop_functional_if_unused(self) -> bool:
        """Stop intercepting torch calls if none of them was an activation layer so far.

        Call between forward passes (after at least one full pass). Returns whether it stopped.
        """
        if self._mode is None or self.functional_layers_seen or self._stack:
            return False
        self._stop_functional()
        return True

    def _enter_module(self, module: nn.Module, args) -> None:
        if not self._stack:
            self._call_counts.clear()  # a new top-level forward pass: restart call numbering
        self._stack.append(module)

    def _leave_module(self, module: nn.Module, args, output) -> None:
        if self._stack and self._stack[-1] is module:
            self._stack.pop()

    def _next_call(self, path: str, fname: str) -> int:
        order = self._call_counts.get((path, fname), 0)
        self._call_counts[(path, fname)] = order + 1
        return order

    def _module_hook(self, path: str, breakpoints: tuple[float, ...]):
        base = path or "model"

        def hook(module: nn.Module, args) -> None:
            if args and isinstance(args[0], torch.Tensor):
                # a module applied twice in one forward (a shared nn.ReLU) is two layers
                order = self._next_call(path, "")
                name = base if order == 0 else f"{base}#{order}"
                self.callback(name, args[0], breakpoints, "module")

        return hook

    def _functional_call(self, fname: str, z: torch.Tensor, breakpoints: tuple[float, ...]):
        owner = self._stack[-1] if self._stack else None
        if owner is not None and module_breakpoints(owner) is not None:
            return  # the call is the body of an activation module, already tapped by its hook
        path = self._paths.get(id(owner), "") if owner is not None else ""
        order = self._next_call(path, fname)
        name = f"{path}.{fname}#{order}" if path else f"{fname}#{order}"
        self.functional_layers_seen = True
        self.callback(name, z, breakpoints, "functional")


def activation_module_types(model: nn.Module) -> dict[str, int]:
    """Types of torch activation modules in `model` (supported or not), with their counts."""
    model = unwrap_model(model)
    found: dict[str, int] = {}
    for module in model.modules():
        if type(module).__module__ == "torch.nn.modules.activation":
            name = type(module).__name__
            found[name] = found.get(name, 0) + 1
    return found


def no_layers_message(model: nn.Module) -> str:
    """Error text for a model in which no supported activation layer ran."""
    model = unwrap_model(model)
    found = activation_module_types(model)
    listing = ", ".join(f"{k} x{v}" for k, v in sorted(found.items())) or "none"
    return (
        f"no supported activation layer ran in {type(model).__name__}. "
        f"Activation modules found: {listing}. Supported: {SUPPORTED_NAMES}. "
        "To measure another piecewise-linear activation module, register it first: "
        "learnscope.patterns.register_activation(MyAct, lambda m: (0.0,)); "
        "to pick layers yourself pass layers=[module_or_name, ...]."
    )


def resolve_layer_selection(
    model: nn.Module, layers: Sequence[nn.Module | str] | None
) -> set[str] | None:
    """Turn a user's layer list (modules or names) into a set of layer names (None = all)."""
    if layers is None:
        return None
    paths = {id(m): path for path, m in unwrap_model(model).named_modules()}
    names: set[str] = set()
    for layer in layers:
        if isinstance(layer, nn.Module):
            if id(layer) not in paths:
                raise ValueError(
                    f"layer module {type(layer).__name__} is not part of the model; pass modules "
                    "of the model being measured (or their names)"
                )
            if module_breakpoints(layer) is None:
                raise ValueError(
                    f"layer {paths[id(layer)]!r} is a {type(layer).__name__}, not a supported "
                    f"activation ({SUPPORTED_NAMES}); register its type with "
                    "learnscope.patterns.register_activation"
                )
            names.add(paths[id(layer)])
        elif isinstance(layer, str):
            names.add(layer)
        else:
            raise TypeError(f"layers must hold modules or names, got {type(layer).__name__}")
    return names


def unknown_layer_message(unknown: set[str], known: Sequence[str]) -> str:
    """Error text for requested layer names that never ran."""
    return (
        f"unknown layer name(s) {sorted(unknown)}; the activation layers of this model are: "
        f"{list(known)}"
    )
