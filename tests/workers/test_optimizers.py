from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrsearch.search.catalog import OPTIMIZERS
from lrsearch.workers import optimizers
from lrsearch.workers.optimizers import build_optimizer

# A rate at which each optimizer is known to make progress on mlp-digits in a few epochs.
SENSIBLE_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "adagrad": 0.05}
TORCH_CLASS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}
# A value other than the catalog default, within its bounds, for every (optimizer, parameter).
OTHER_VALUE = {"momentum": 0.5, "nesterov": True, "weight_decay": 0.003, "alpha": 0.9}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_every_catalog_optimizer_has_a_builder() -> None:
    assert set(optimizers._BUILDERS) == set(OPTIMIZERS)
    assert set(SENSIBLE_LR) == set(OPTIMIZERS)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_defaults_come_from_the_catalog(name: str) -> None:
    opt = build_optimizer(_model().parameters(), {"optimizer": name, "lr": 0.02})
    assert type(opt) is TORCH_CLASS[name]
    group = opt.param_groups[0]
    assert group["lr"] == 0.02
    for spec in OPTIMIZERS[name]:
        assert group[spec.name] == spec.default(10), spec.name


@pytest.mark.parametrize(
    ("name", "param"), [(name, spec.name) for name, specs in OPTIMIZERS.items() for spec in specs]
)
def test_given_parameters_reach_torch(name: str, param: str) -> None:
    config = {"optimizer": name, "lr": 0.02, param: OTHER_VALUE[param]}
    if param == "nesterov":
        config["momentum"] = 0.9
    opt = build_optimizer(_model().parameters(), config)
    assert opt.param_groups[0][param] == OTHER_VALUE[param]


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_nesterov_without_momentum_is_plain_sgd(momentum: float) -> None:
    opt = build_optimizer(_model().parameters(), {"optimizer": "sgd", "lr": 0.1, "momentum": momentum, "nesterov": True})
    assert opt.param_groups[0]["nesterov"] is (momentum > 0)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"optimizer": "lion", "lr": 0.1}, "known: sgd, adam, adamw, rmsprop, adagrad"),
        ({"optimizer": "sgd", "lr": 0.0}, "lr must be finite and positive"),
        ({"optimizer": "sgd", "lr": math.nan}, "lr must be finite and positive"),
        ({"optimizer": "sgd", "lr": math.inf}, "lr must be finite and positive"),
        ({"optimizer": "sgd"}, "no 'lr'"),
        ({"optimizer": "sgd", "lr": 0.1, "momentum": 1.5}, "momentum must be in"),
        ({"optimizer": "sgd", "lr": 0.1, "nesterov": "false"}, "nesterov must be a boolean"),
        ({"optimizer": "rmsprop", "lr": 0.1, "alpha": 0.1}, "alpha must be in"),
    ],
)
def test_bad_configs_are_refused_by_name(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_optimizer(_model().parameters(), config)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fused_kernel_on_cpu_matches_the_reference_loop(name: str) -> None:
    """build_optimizer picks torch's fused CPU kernel for speed; it must train like the default one."""
    x, y = torch.randn(32, 4, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 2
    config = {"optimizer": name, "lr": 0.01, "weight_decay": 0.01}
    fast_model, reference_model = _model(), _model()
    fast = build_optimizer(fast_model.parameters(), config)
    values = {spec.name: config.get(spec.name, spec.default(1)) for spec in OPTIMIZERS[name]}
    reference = optimizers._BUILDERS[name](list(reference_model.parameters()), 0.01, values)
    assert bool(fast.param_groups[0].get("fused")) is (name in optimizers._FUSED)
    for _ in range(20):
        for model, opt in ((fast_model, fast), (reference_model, reference)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for a, b in zip(fast_model.parameters(), reference_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_lowers_the_loss_on_mlp_digits(name: str, run_trial) -> None:
    results = run_trial("mlp-digits", {"optimizer": name, "lr": SENSIBLE_LR[name], "schedule": "constant"}, epochs=3)
    assert not any(r.diverged for r in results)
    chance = math.log(10)  # cross-entropy of a uniform guess over 10 classes
    assert results[0].val_loss < chance
    assert results[-1].val_loss < 0.6 * results[0].val_loss
    assert results[-1].train_loss < results[0].train_loss
    assert results[-1].val_accuracy > 0.8
