"""Acceptance 1: each oracle's exact posterior (mean and covariance) equals dense Gaussian conditioning
written out here independently (explicit DFT matrices, explicit observation matrices, float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcs import noise
from fcs.constraints import LatentInpaint, PixelInpaint, SuperResolution, downsample
from fcs.oracles import load_oracle

TOL = 1e-6


def _dense_prior_cov(prior, c: int, h: int, w: int) -> np.ndarray:
    """C = (U ⊗ I)·blockdiag(Fᴴ·diag(λ_k)·F)·(Uᵀ ⊗ I) with an explicit unitary 2-D DFT matrix."""
    fy, fx = np.fft.fftfreq(h), np.fft.fftfreq(w)
    dft = np.kron(np.exp(-2j * np.pi * np.outer(range(h), range(h)) / h),
                  np.exp(-2j * np.pi * np.outer(range(w), range(w)) / w)) / np.sqrt(h * w)
    radius2 = (fy[:, None] ** 2 + fx[None, :] ** 2 + prior.cutoff**2).ravel()
    blocks = np.zeros((c * h * w, c * h * w))
    for k in range(c):
        lam = prior.amplitude[k].item() * radius2 ** (-prior.exponent[k].item() / 2)
        s = slice(k * h * w, (k + 1) * h * w)
        blocks[s, s] = (dft.conj().T @ np.diag(lam) @ dft).real
    mix = np.kron(prior.mix.numpy(), np.eye(h * w))
    return mix @ blocks @ mix.T


def _matrix(fn, d: int, shape) -> np.ndarray:
    """The (m, d) matrix of a linear map on model space, column by column."""
    cols = [fn(torch.eye(d, dtype=torch.float64)[j].view(1, *shape)).flatten() for j in range(d)]
    return torch.stack(cols, 1).numpy()


def _condition(mean, cov, a, y, noise_var=0.0):
    k = a @ cov @ a.T + noise_var * np.eye(len(a))
    gain = cov @ a.T @ np.linalg.pinv(k, hermitian=True, rcond=1e-12)
    return mean + gain @ (y - a @ mean), cov - gain @ a @ cov


def _problem(name: str, task: str, side: int):
    den = load_oracle(name)
    shape = den.latent_shape(side, side)
    truth = den.decode(den.prior.sample(noise.generators([7]), shape))  # float64, unclamped
    mask = torch.zeros(1, 1, side, side, dtype=torch.float64)
    mask[..., side // 4: 3 * side // 4, side // 4: side // 2] = 1
    if task == "latent":
        return den, LatentInpaint.from_pixels(den, truth, mask), shape
    if task == "pixels":
        scattered = (torch.rand(1, 1, side, side, generator=torch.Generator().manual_seed(3)) < 0.9).double()
        return den, PixelInpaint(den.decode, truth, scattered), shape
    return den, SuperResolution(den.decode, downsample(truth, 2), 2), shape


CASES = [("oracle-gauss", "latent", 8), ("oracle-gauss", "pixels", 8), ("oracle-gauss", "sr2", 8),
         ("oracle-latent", "latent", 16), ("oracle-latent", "pixels", 16), ("oracle-latent", "sr2", 16)]


@pytest.mark.parametrize("name,task,side", CASES)
@pytest.mark.parametrize("noise_std", [0.0, 0.05])
def test_image_oracle_posterior_equals_dense_conditioning(name, task, side, noise_std):
    den, constraint, shape = _problem(name, task, side)
    d = int(np.prod(shape))
    prior = den.prior
    cov = _dense_prior_cov(prior, *shape)
    mean = np.repeat(prior.mean.numpy(), shape[1] * shape[2])
    if task == "latent":
        keep = (constraint.known > 0.5).double().expand(1, *shape).flatten().bool().numpy()
        a, y = np.eye(d)[keep], constraint.target.double().flatten().numpy()[keep]
    else:
        offset = den.decode(torch.zeros(1, *shape, dtype=torch.float64))
        if task == "pixels":
            keep = constraint.keep.expand_as(constraint.image).flatten().bool().numpy()
            a = _matrix(lambda x: den.decode(x) - offset, d, shape)[keep]
            y = (constraint.image.double() - offset).flatten().numpy()[keep]
        else:
            a = _matrix(lambda x: downsample(den.decode(x) - offset, 2), d, shape)
            y = (constraint.low_res.double() - downsample(offset, 2)).flatten().numpy()
    want_mean, want_cov = _condition(mean, cov, a, y, noise_std**2)
    post = den.posterior(constraint, noise_std=noise_std)
    assert post.method == "dense"
    np.testing.assert_allclose(post.mean.flatten().numpy(), want_mean, atol=TOL, rtol=0)
    np.testing.assert_allclose(post.covariance(0).numpy(), want_cov, atol=TOL, rtol=0)
    np.testing.assert_allclose(post.var.flatten().numpy(), np.diag(want_cov), atol=TOL, rtol=0)


@pytest.mark.parametrize("task", ["latent", "pixels", "sr2"])
def test_conjugate_gradient_posterior_mean_equals_the_dense_one(task):
    """The solver used above DENSE_LIMIT (FFT matvecs) gives the same mean and unbiased samples."""
    from fcs.oracles.posterior import GaussianPosterior, observation

    den, constraint, shape = _problem("oracle-gauss", task, 8)
    dense = den.posterior(constraint)
    cg = GaussianPosterior(den.prior, observation(den, constraint), (1, *shape), method="cg")
    torch.testing.assert_close(cg.mean, dense.mean, atol=TOL, rtol=0)
    torch.testing.assert_close(cg.sample(noise.generators(range(3))), dense.sample(noise.generators(range(3))),
                               atol=1e-5, rtol=0)


def test_posterior_samples_have_the_posterior_moments():
    den, constraint, shape = _problem("oracle-gauss", "latent", 8)
    post = den.posterior(constraint)
    samples = post.sample(noise.generators(range(4000)))[:, 0]
    free = post.var[0] > 1e-6
    err = (samples.mean(0) - post.mean[0]).abs()[free] / post.var[0][free].sqrt()
    assert float(err.max()) < 5 / 4000**0.5  # every element's mean within 5 standard errors
    assert float((samples.mean(0) - post.mean[0]).abs()[~free].max()) < 1e-6  # kept elements are kept
    ratio = samples.var(0)[free] / post.var[0][free]
    assert 0.85 < float(ratio.min()) and float(ratio.max()) < 1.15


def _dense_gaussian_mixture_posterior(prior, known, y, noise_var):
    components = [(w, mu, np.diag(var)) for w, mu, var in
                  zip(prior.weights.numpy(), prior.means.numpy(), prior.variances.numpy(), strict=True)]
    return _dense_mixture_posterior(components, np.eye(prior.dim)[known], y, noise_var)


def _dense_mixture_posterior(components, a, y, noise_var):
    """Per component (w_k, μ_k, Σ_k): dense conditioning and its evidence N(y; A·μ_k, A·Σ_k·Aᵀ + σ²·I), then mix."""
    log_w, means, covs = [], [], []
    for w, mu, cov in components:
        k = a @ cov @ a.T + noise_var * np.eye(len(a))
        r = y - a @ mu
        log_w.append(np.log(w) - 0.5 * (r @ np.linalg.solve(k, r) + np.linalg.slogdet(2 * np.pi * k)[1]))
        m, c = _condition(mu, cov, a, y, noise_var)
        means.append(m)
        covs.append(c)
    weights = np.exp(np.array(log_w) - max(log_w))
    weights /= weights.sum()
    mean = sum(wk * mk for wk, mk in zip(weights, means, strict=True))
    second = sum(wk * (np.diag(ck) + mk**2) for wk, mk, ck in zip(weights, means, covs, strict=True))
    return weights, mean, second - mean**2


@pytest.mark.parametrize("noise_std", [0.0, 0.05])
def test_mixture_posterior_equals_dense_conditioning_per_component(noise_std):
    den = load_oracle("oracle-gmm")
    x = den.prior.sample(noise.generators([5]))
    known = torch.zeros(1, 1, 1, den.prior.dim)
    known[..., :3] = 1  # observe 3 of 8 coordinates
    constraint = LatentInpaint(x.float(), known)
    post = den.posterior(constraint, noise_std=noise_std)
    y = x.flatten().numpy()[:3].astype(np.float32).astype(np.float64)
    weights, mean, var = _dense_gaussian_mixture_posterior(den.prior, np.arange(8) < 3, y, noise_std**2)
    np.testing.assert_allclose(post.weights[0].numpy(), weights, atol=TOL)
    np.testing.assert_allclose(post.mean.flatten().numpy(), mean, atol=TOL)
    np.testing.assert_allclose(post.var.flatten().numpy(), var, atol=TOL)
    samples = post.sample(noise.generators(range(3000)))[:, 0].flatten(1)
    assert float((samples.mean(0) - post.mean.flatten()).abs().max()) < 0.05


def _mixture_problem(noise_std: float, side: int = 8):
    den = load_oracle("oracle-mix")
    shape = den.latent_shape(side, side)
    truth = den.decode(den.prior.sample(noise.generators([11]), shape))  # float64, unclamped
    mask = torch.zeros(1, 1, side, side, dtype=torch.float64)
    mask[..., 2:6, 3:7] = 1
    constraint = LatentInpaint.from_pixels(den, truth, mask)
    components = [(float(w), np.repeat(c.mean.numpy(), side * side), _dense_prior_cov(c, *shape))
                  for w, c in zip(den.prior.weights, den.prior.components, strict=True)]
    return den, constraint, shape, components


@pytest.mark.parametrize("noise_std", [0.0, 0.05])
def test_image_mixture_posterior_equals_dense_conditioning_per_component(noise_std):
    """oracle-mix: component weights, mean and variances equal dense conditioning of each component
    re-weighted by its dense evidence; the exact samples' mean responsibility is the posterior weight."""
    den, constraint, shape, components = _mixture_problem(noise_std)
    d = int(np.prod(shape))
    keep = (constraint.known > 0.5).double().expand(1, *shape).flatten().bool().numpy()
    y = constraint.target.double().flatten().numpy()[keep]
    weights, mean, var = _dense_mixture_posterior(components, np.eye(d)[keep], y, noise_std**2)
    post = den.posterior(constraint, noise_std=noise_std)
    assert 0.05 < weights.max() < 0.95  # the observation leaves the component uncertain
    np.testing.assert_allclose(post.weights[0].numpy(), weights, atol=TOL)
    np.testing.assert_allclose(post.mean.flatten().numpy(), mean, atol=TOL)
    np.testing.assert_allclose(post.var.flatten().numpy(), var, atol=TOL)
    shares = den.prior.responsibilities(post.sample(noise.generators(range(2000)))[:, 0]).mean(0)
    np.testing.assert_allclose(shares.numpy(), weights, atol=0.05)


def test_image_mixture_denoiser_equals_dense_conditioning():
    """E[x0 | x_t] of oracle-mix = Σ_k π_k(x_t)·(μ_k + α·C_k·(α²·C_k + σ²·I)⁻¹·(x_t − α·μ_k)), dense."""
    den, _, shape, components = _mixture_problem(0.0)
    alpha, sigma = 0.6, 0.8
    x = alpha * den.prior.sample(noise.generators([3]), shape) + sigma * torch.randn(
        1, *shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    flat = x.flatten().numpy()
    log_w, means = [], []
    for w, mu, cov in components:
        k = alpha**2 * cov + sigma**2 * np.eye(len(mu))
        r = flat - alpha * mu
        log_w.append(np.log(w) - 0.5 * (r @ np.linalg.solve(k, r) + np.linalg.slogdet(2 * np.pi * k)[1]))
        means.append(mu + alpha * cov @ np.linalg.solve(k, r))
    resp = np.exp(np.array(log_w) - max(log_w))
    resp /= resp.sum()
    np.testing.assert_allclose(den.prior.log_responsibilities(x, alpha, sigma).exp()[0].numpy(), resp, atol=TOL)
    np.testing.assert_allclose(den.prior.denoise(x, alpha, sigma).flatten().numpy(),
                               sum(r * m for r, m in zip(resp, means, strict=True)), atol=TOL)


def test_stored_fit_is_what_the_fit_script_computes():
    """fitted.json is reproducible from the photos by ``python -m fcs.oracles.fit``."""
    from fcs.oracles.fit import fit_oracles, load_fitted

    stored, fresh = load_fitted(), fit_oracles()

    def flat(values) -> np.ndarray:
        if isinstance(values, dict):
            return np.concatenate([flat(v) for _, v in sorted(values.items()) if not isinstance(v, str)])
        return np.asarray(values, np.float64).ravel()

    assert stored["photos"] == fresh["photos"]
    np.testing.assert_allclose(flat(fresh["gauss"]), flat(stored["gauss"]), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(flat(fresh["latent"]), flat(stored["latent"]), rtol=1e-6, atol=1e-9)
