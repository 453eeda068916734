"""The memory table's inputs: full-size parameter counts from meta-device instances of the published
configs, and activation tracing on the meta device (no memory, no download, a few seconds)."""

from __future__ import annotations

import pytest
import torch

from fcs.families import memory


@pytest.fixture(scope="module")
def counts() -> dict[str, dict[str, int]]:
    return {name: memory.parameter_counts(name) for name in memory.ARCHITECTURES}


def test_parameter_counts_match_the_published_models(counts) -> None:
    assert round(counts["sd15"]["denoiser"] / 1e6, 1) == 859.5  # the SD 1.5 UNet, as docs/scaling.md states
    assert round(counts["sd15"]["vae"] / 1e6, 1) == 83.7 and round(counts["sd15"]["text_encoder"] / 1e6, 1) == 123.1
    assert 2.55e9 < counts["sdxl"]["denoiser"] < 2.58e9  # SDXL base UNet ≈ 2.57 B
    assert 690e6 < counts["sdxl"]["text_encoder_2"] < 700e6  # OpenCLIP bigG with projection ≈ 695 M
    assert 2.2e9 < counts["sd35-medium"]["denoiser"] < 2.5e9  # SD3.5-medium MMDiT-X
    assert 8.0e9 < counts["sd35-large"]["denoiser"] < 8.2e9
    assert 11.85e9 < counts["flux-dev"]["denoiser"] < 11.95e9  # FLUX.1-dev ≈ 11.9 B
    t5 = counts["flux-dev"]["text_encoder_2"]
    assert 4.75e9 < t5 < 4.77e9 and counts["sd35-medium"]["text_encoder_3"] == t5  # T5-XXL encoder ≈ 4.76 B
    assert 330e6 < counts["sd21"]["text_encoder"] < 345e6  # OpenCLIP ViT-H text tower
    assert 87e6 < memory.clip_vision_parameters() < 89e6  # the style task's ViT-B/32


def test_weights_in_bytes_follow_each_family_dtype(counts) -> None:
    sdxl, flux = memory.family_memory("sdxl", with_activations=False), memory.family_memory("flux-dev", False)
    assert sdxl["bytes"]["denoiser"] == 2 * counts["sdxl"]["denoiser"]
    assert sdxl["vae_dtype"] == "fp32" and sdxl["bytes"]["vae"] == 4 * counts["sdxl"]["vae"]  # force_upcast
    assert flux["dtype"] == "bf16" and flux["bytes"]["text_encoders"] == 2 * (
        counts["flux-dev"]["text_encoder"] + counts["flux-dev"]["text_encoder_2"])
    assert flux["bytes"]["total"] == sum(v for k, v in flux["bytes"].items() if k != "total")


def test_full_size_denoiser_runs_on_the_meta_device_through_its_family_class() -> None:
    from fcs.families.flux import FluxDenoiser

    den = memory.build_denoiser("flux-dev")
    assert isinstance(den, FluxDenoiser) and den.dtype == torch.bfloat16 and den.has_guidance
    x = torch.empty(2, *den.latent_shape(1024, 1024), device="meta")
    _, x0 = den.predict(x, 500.0, memory.random_cond("flux-dev", 2))
    assert x0.shape == (2, 16, 128, 128)


def test_activation_tracing_is_per_item_and_sees_what_each_path_keeps() -> None:
    a, native = memory.activations("sd15", side=256), memory.activations("sd15", side=512)
    assert 0 < a["forward"] < a["jvp"] < a["jvp_math"]
    # at the native size the exact JVP as it runs (blockwise attention) is within 3x the fused forward;
    # with math attention (N² probabilities and their tangents) it is over 30x
    assert native["jvp"] <= 3 * native["forward"] and native["jvp_math"] > 30 * native["forward"]
    assert 0 < a["decode"] < a["decoder_saved"]  # a decoder backward keeps far more than a decode's peak
    assert native["decoder_saved"] == pytest.approx(4 * a["decoder_saved"], rel=0.01)


def test_the_printed_tables_name_every_family() -> None:
    report = memory.memory_report(["sd15", "flux-dev"], with_activations=False)
    text = memory.format_tables(report)
    assert "| sd15 (512²) | fp16 | 859.5 M |" in text and "| flux-dev (1024²) | bf16 | 11.90 B |" in text
    assert "free_text_encoders" in text
