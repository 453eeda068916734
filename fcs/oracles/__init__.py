"""Priors whose exact posterior is known, as denoisers: the ground truth for every sampler.

    oracle-gauss    stationary Gaussian over RGB pixels (any H × W), spectrum fitted to photos
    oracle-latent   the same kind of prior over a 4-channel latent at 1/4 resolution, with a
                    linear decoder/encoder: latent and pixel constraints stay linear-Gaussian
    oracle-mix      a mixture of three such pixel priors with different mean colours and spectra
                    (multimodal posteriors over images)
    oracle-gmm      a 25-component Gaussian mixture in 8 dimensions (multimodal posteriors)

Each is an :class:`OracleDenoiser` in any convention (ε, v, flow) with ``posterior(constraint)``.
"""

from __future__ import annotations

from fcs.oracles.denoiser import OracleDenoiser
from fcs.oracles.gaussian import StationaryGaussian
from fcs.oracles.image_mixture import ImageMixture, colour_mixture
from fcs.oracles.linear_vae import LinearVAE
from fcs.oracles.mixture import GaussianMixture, grid_mixture
from fcs.oracles.posterior import GaussianPosterior, ImageMixturePosterior, MixturePosterior

ORACLES = ("oracle-gauss", "oracle-latent", "oracle-mix", "oracle-gmm")  # the built-in names (fcs.loading.BUILTIN)
GMM_DIM = 8


def load_oracle(name: str, prediction_type: str = "epsilon", dim: int = GMM_DIM) -> OracleDenoiser:
    """A built-in oracle by name (``dim``: the mixture's dimension)."""
    from fcs.oracles.fit import load_fitted

    if name == "oracle-gmm":
        return OracleDenoiser(grid_mixture(dim), prediction_type, name=name)
    if name == "oracle-gauss":
        return OracleDenoiser(StationaryGaussian.from_dict(load_fitted()["gauss"]), prediction_type, name=name)
    if name == "oracle-mix":
        return OracleDenoiser(colour_mixture(StationaryGaussian.from_dict(load_fitted()["gauss"])), prediction_type,
                              name=name)
    if name == "oracle-latent":
        fitted = load_fitted()["latent"]
        return OracleDenoiser(StationaryGaussian.from_dict(fitted["prior"]), prediction_type,
                              vae=LinearVAE.from_dict(fitted["vae"]), name=name)
    raise ValueError(f"unknown oracle {name!r}; built-in oracles: {', '.join(ORACLES)}")


__all__ = ["ORACLES", "GaussianMixture", "GaussianPosterior", "ImageMixture", "ImageMixturePosterior", "LinearVAE",
           "MixturePosterior", "OracleDenoiser", "StationaryGaussian", "load_oracle"]
