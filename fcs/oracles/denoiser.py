"""An analytic prior as a :class:`fcs.denoiser.Denoiser`: exact E[x0 | x_t] in any convention.

The "network output" is computed from the exact x̂0 in the chosen convention (ε, v or flow) and goes
through the same conversion as a trained model's (:func:`fcs.schedule.to_prediction`), so the three
conventions check the shared code, and the samplers run on an oracle unchanged.

Schedules: variance-preserving forms use Stable Diffusion 1.5's noise schedule and DDIM timesteps;
the flow form walks the same noise levels (s = σ/(α + σ), the flow time with the same σ/α), so one
prior gives one DDIM path in every convention.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from fcs.denoiser import Cond, Denoiser
from fcs.oracles.gaussian import StationaryGaussian
from fcs.oracles.image_mixture import ImageMixture
from fcs.oracles.linear_vae import LinearVAE
from fcs.oracles.mixture import GaussianMixture
from fcs.oracles.posterior import GaussianPosterior, ImageMixturePosterior, MixturePosterior, observation, pixel_size
from fcs.schedule import Schedule, check_prediction, from_prediction, vp_coefficients


class OracleDenoiser(Denoiser):
    """Exact denoiser of ``prior`` (a :class:`StationaryGaussian`, :class:`ImageMixture` or
    :class:`GaussianMixture`),
    optionally in the latent space of a :class:`LinearVAE`.

    Args:
        prior: the prior over model space x0.
        prediction_type: "epsilon", "v_prediction" or "flow".
        vae: a linear decoder/encoder pair (model space = its latents), or None (pixels in [-1, 1]).
    """

    def __init__(self, prior: StationaryGaussian | ImageMixture | GaussianMixture, prediction_type: str = "epsilon",
                 vae: LinearVAE | None = None, name: str = "oracle") -> None:
        from diffusers import DDIMScheduler

        from fcs.tiny import SD15_SCHEDULER

        self.prior, self.vae, self.name = prior, vae, name
        self.prediction_type = check_prediction(prediction_type)
        self._scheduler = DDIMScheduler(**SD15_SCHEDULER)
        self._alphas = self._scheduler.alphas_cumprod.double()

    @property
    def channels(self) -> int:
        return 1 if isinstance(self.prior, GaussianMixture) else self.prior.channels

    @property
    def scale_factor(self) -> int:
        return self.vae.factor if self.vae is not None else 1

    # -- schedule ----------------------------------------------------------------------------
    def coefficients(self, t) -> tuple[float, float]:
        if self.prediction_type == "flow":
            return 1 - float(t), float(t)
        return vp_coefficients(self._alphas, t)

    def schedule(self, steps: int, shape: Sequence[int] | None = None) -> Schedule:
        self._scheduler.set_timesteps(steps)
        vp = Schedule.variance_preserving(self._alphas, [int(t) for t in self._scheduler.timesteps])
        if self.prediction_type != "flow":
            return vp
        return Schedule.flow([s / (a + s) for a, s in zip(vp.alphas, vp.sigmas, strict=True)])

    # -- the exact denoiser ------------------------------------------------------------------
    def model_output(self, x: Tensor, t, cond: Cond) -> Tensor:
        alpha, sigma = self.coefficients(t)
        x64 = x.double()
        x0 = self.prior.denoise(x64, alpha, sigma)
        eps = (x64 - alpha * x0) / sigma
        return from_prediction(eps, x0, alpha, sigma, self.prediction_type)

    # -- model space -------------------------------------------------------------------------
    def encode(self, images: Tensor) -> Tensor:
        x = super().encode(images)
        return self.vae.encode(x.double()).to(x.dtype) if self.vae is not None else x

    def decode(self, x0: Tensor) -> Tensor:
        if self.vae is None:
            return super().decode(x0)
        x = self.vae.decode(x0.double())
        return super().decode(x if x0.dtype == x.dtype else x.float())

    # -- ground truth ------------------------------------------------------------------------
    def posterior(self, constraint,
                  noise_std: float = 0.0) -> GaussianPosterior | ImageMixturePosterior | MixturePosterior:
        """The exact p(x0 | y) of a linear constraint built for this denoiser (LatentInpaint with a
        0/1 mask; PixelInpaint and SuperResolution through the decoder for the image priors), with
        Gaussian observation noise of std ``noise_std`` (0 = exact constraint)."""
        if isinstance(self.prior, GaussianMixture):
            return MixturePosterior(self.prior, constraint, noise_std)
        obs = observation(self, constraint)
        shape = (obs.target.shape[0], *self._model_shape(constraint))
        kind = ImageMixturePosterior if isinstance(self.prior, ImageMixture) else GaussianPosterior
        return kind(self.prior, obs, shape, noise_std)

    def _model_shape(self, constraint) -> tuple[int, int, int]:
        if hasattr(constraint, "known"):
            return tuple(constraint.target.shape[1:])
        return self.latent_shape(*pixel_size(constraint))
