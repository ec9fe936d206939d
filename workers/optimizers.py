"""torch optimizers for the names and parameters of ``search.catalog.OPTIMIZERS``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from lrsearch.search.catalog import OPTIMIZERS
from lrsearch.workers import _params

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def build_optimizer(params: Params, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer ``config["optimizer"]`` over ``params`` at rate ``config["lr"]``.

    Parameters absent from ``config`` take the catalog's defaults; a value outside the
    catalog's bounds or an unknown name raises ValueError. On the CPU, torch's fused kernel is used
    where the optimizer has one: on the small models of short trials the default per-tensor loop
    costs 2-3x more per step. Elsewhere (CUDA) torch's default implementation is used.
    """
    name = _params.optimizer_name(config)
    lr = _params.base_lr(config)
    # Optimizer defaults do not depend on the job's length; any epochs will do.
    values = _params.resolve(OPTIMIZERS[name], config, epochs=1)
    listed: list[Any] = list(params)  # tensors, or param groups
    build = _BUILDERS[name]
    if name in _FUSED and all(_cpu_floats(p) for p in listed):
        return build(listed, lr, values, fused=True)
    return build(listed, lr, values)


def _cpu_floats(entry: torch.Tensor | dict[str, Any]) -> bool:
    # torch checks fused support only at the first step(); decide here, where a refusal is cheap.
    tensors = entry["params"] if isinstance(entry, dict) else [entry]
    return all(t.device.type == "cpu" and t.is_floating_point() for t in tensors)


def _sgd(params: Params, lr: float, p: dict[str, Any], **impl: Any) -> torch.optim.Optimizer:
    # torch refuses nesterov without momentum (there is no velocity to look ahead with);
    # with momentum 0 the two are the same plain SGD, so turn nesterov off instead of failing.
    nesterov = p["nesterov"] and p["momentum"] > 0
    return torch.optim.SGD(
        params, lr=lr, momentum=p["momentum"], nesterov=nesterov, weight_decay=p["weight_decay"], **impl
    )


def _adam(params: Params, lr: float, p: dict[str, Any], **impl: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=p["weight_decay"], **impl)


def _adamw(params: Params, lr: float, p: dict[str, Any], **impl: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=p["weight_decay"], **impl)


def _rmsprop(params: Params, lr: float, p: dict[str, Any], **impl: Any) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(
        params, lr=lr, alpha=p["alpha"], momentum=p["momentum"], weight_decay=p["weight_decay"], **impl
    )


def _adagrad(params: Params, lr: float, p: dict[str, Any], **impl: Any) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(params, lr=lr, weight_decay=p["weight_decay"], **impl)


_BUILDERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adamw": _adamw,
    "rmsprop": _rmsprop,
    "adagrad": _adagrad,
}
# torch has fused CPU kernels for these (RMSprop has none).
_FUSED = frozenset({"sgd", "adam", "adamw", "adagrad"})
