"""Where a network's group norms run, from its diffusers config: what :meth:`fcs.denoiser.Denoiser.min_side` needs.

torch's group norm needs more than one value per group: for one image, (channels / groups) × h × w > 1.
Small UNets (one channel per group) miss that at their coarsest level on small inputs. A level is
(pixels per cell along a side, fewest channels per group that a group norm sees at that resolution).
"""

from __future__ import annotations

from typing import Any

Level = tuple[int, int]


def unet_levels(config: Any, pixels_per_cell: int = 1) -> list[Level]:
    """A ``UNet2DModel`` or ``UNet2DConditionModel`` over cells of ``pixels_per_cell`` pixels (the VAE
    factor). Level i (downsampled i times) holds down block i's resnets, whose input has block i − 1's
    channels, its attention norms (``attn_norm_num_groups`` where set) on block i's channels, the mid
    block at the last level and the up blocks' concatenations (wider than either)."""
    groups = getattr(config, "norm_num_groups", None)
    if not groups:
        return []
    attn_groups = getattr(config, "attn_norm_num_groups", None) or groups
    channels = list(config.block_out_channels)
    return [(pixels_per_cell * 2**i, min(channels[max(i - 1, 0)] // groups, c // groups, c // attn_groups))
            for i, c in enumerate(channels)]


def vae_levels(config: Any) -> list[Level]:
    """An ``AutoencoderKL``: level k (2^k pixels per cell) holds encoder block k's input (block k − 1's
    channels) and output, and decoder block k's input (block k + 1's channels, upsampled)."""
    groups = getattr(config, "norm_num_groups", None)
    if not groups:
        return []
    channels = list(config.block_out_channels)
    last = len(channels) - 1
    return [(2**k, min(channels[max(k - 1, 0)], c, channels[min(k + 1, last)]) // groups)
            for k, c in enumerate(channels)]
