"""SamplerConfig: bad values fail at construction with the field's name, what came in and what is
allowed; the options it hands each sampler fit that sampler's signature."""

from __future__ import annotations

import inspect

import pytest

import fcs
from fcs import SamplerConfig


@pytest.mark.parametrize(
    "field, value",
    [
        ("method", "euler"),
        ("steps", 0),
        ("steps", 2.5),
        ("steps", True),
        ("steps", "20"),
        ("newton_steps", -1),
        ("newton_steps", 1.0),
        ("h", 0.0),
        ("h", 1.0),
        ("h", "5e-3"),  # YAML 1.1 reads 5e-3 (no dot) as a string
        ("jacobian", "exact"),
        ("tol", -1.0),
        ("tol", "1e-3"),
        ("eta", -0.1),
        ("eta", 1.5),
        ("guidance_scale", 0.5),
        ("guidance_scale", "3"),
        ("feather", -1),
        ("feather", 1.5),
        ("lr", "0.5"),
        ("dps_step_size", None),
        ("spacing", "karras"),
        ("solver", "heun"),
    ],
)
def test_bad_value_names_the_field(field, value):
    with pytest.raises(ValueError) as info:
        SamplerConfig(**{field: value})
    message = str(info.value)
    assert repr(field) in message, message
    assert repr(value) in message, message
    assert "expected" in message, message


def test_lr_must_have_one_entry_per_newton_step():
    with pytest.raises(ValueError, match="'lr'.*3 floats"):
        SamplerConfig(newton_steps=3, lr=(0.5, 0.1))
    assert SamplerConfig(newton_steps=2, lr=[0.5, 0.1]).lr == (0.5, 0.1)  # lists become tuples (frozen)
    assert SamplerConfig(newton_steps=2, lr=0.2).lr == 0.2


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match="newton_stpes"):
        SamplerConfig.from_dict({"steps": 4, "newton_stpes": 2})


def test_round_trip_through_a_dict():
    config = SamplerConfig(steps=4, newton_steps=2, lr=(0.3, 0.1), tol=1e-3, jacobian="jvp")
    assert SamplerConfig.from_dict(config.to_dict()) == config


def test_defaults_are_the_papers():
    config = SamplerConfig()
    assert (config.method, config.steps, config.newton_steps, config.h,
            config.jacobian) == ("newton", 20, 5, 0.005, "auto")
    assert config.nfe_per_item == 220
    assert config.composite is True
    from fcs.samplers import learning_rates

    assert learning_rates(5, None) == pytest.approx([0.5, 0.4, 0.3, 0.2, 0.1])


@pytest.mark.parametrize("method", sorted(fcs.SAMPLERS))
def test_sampler_options_fit_the_sampler(method):
    config = SamplerConfig(method=method, steps=3, newton_steps=2, tol=0.1)
    signature = inspect.signature(fcs.SAMPLERS[method])
    signature.bind_partial(**config.sampler_options())
    assert config.nfe_per_item == (3 * 5 if method == "newton" else 3)
    assert SamplerConfig(method=method, eta=0.5).sampler_options()["eta"] == 0.5  # every caller gets the noise


def test_the_deterministic_second_order_solver_refuses_ddim_noise():
    with pytest.raises(ValueError, match="config field 'solver'.*eta"):
        SamplerConfig(solver="2m", eta=0.5)
    assert SamplerConfig(solver="2m").sampler_options()["solver"] == "2m"


def test_config_is_immutable():
    with pytest.raises(AttributeError):
        SamplerConfig().steps = 3  # type: ignore[misc]
