"""Constraints: each turns x̂0 into an error vector toward satisfying it and a residual."""

from fcs.constraints.base import Constraint, per_item_max
from fcs.constraints.latent_inpaint import LatentInpaint
from fcs.constraints.pixel import ImageLoss, PixelInpaint, SuperResolution, downsample
from fcs.constraints.projection import EncoderSuperResolution, ProjectedConstraint
from fcs.constraints.style import Style

__all__ = [
    "Constraint",
    "EncoderSuperResolution",
    "ProjectedConstraint",
    "ImageLoss",
    "LatentInpaint",
    "PixelInpaint",
    "Style",
    "SuperResolution",
    "downsample",
    "per_item_max",
]
