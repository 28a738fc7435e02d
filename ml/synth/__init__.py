"""Synthetic disk-galaxy images of known inclination (pure numpy; no Django)."""

from ml.synth.render import (
    INC_MAX,
    INC_MIN,
    KINDS,
    SynthConfig,
    apparent_axis_ratio,
    bayes_inclination_from_axis_ratio,
    inclination_from_axis_ratio,
    render_one,
    render_set,
    sersic_bn,
)

__all__ = [
    "INC_MAX",
    "INC_MIN",
    "KINDS",
    "SynthConfig",
    "apparent_axis_ratio",
    "bayes_inclination_from_axis_ratio",
    "inclination_from_axis_ratio",
    "render_one",
    "render_set",
    "sersic_bn",
]
