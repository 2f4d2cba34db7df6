"""Batched MoCo v2 augmentation on uint8 image tensors (any device, no per-image Python loop).

One call augments a whole batch, each image with its own random draw, like torchvision's
per-sample PIL pipeline (RandomResizedCrop, ColorJitter, RandomGrayscale, GaussianBlur,
RandomHorizontalFlip, ToTensor, Normalize) but vectorised:

1. random resized crop + horizontal flip: one affine grid per sample and one ``grid_sample``,
   done first, straight at the output size, so every later step works on ``out_size`` pixels;
2. colour jitter (brightness, contrast, saturation, hue) with per-sample factors, the four ops in
   one random order per batch; samples that skip jitter get identity factors;
3. random grayscale (ITU-R 601-2 luma, three channels);
4. optional Gaussian blur with a per-sample sigma (separable, depthwise, grouped conv);
5. normalize with mean/std.

Pixels are float32 in [0, 1] until the normalize step. Every random number comes from the
``torch.Generator`` passed in, which lives on the images' device, so a seed fixes the output.

The building blocks (crop boxes from uniforms, the resized crop, the colour ops, RGB <-> HSV)
are pure functions, tested on their own against slow references.

Known differences from the PIL pipeline: ``grid_sample`` does not antialias, so crops much
larger than ``out_size`` (e.g. ImageNet images to 224) alias a little more than PIL's resize; when
a crop is upsampled (always at CIFAR-10 sizes) the outermost output pixels blend in the image
pixel just outside the box, where PIL clamps at the box edge. The jitter order is drawn once per
batch, not per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

LUMA: tuple[float, float, float] = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma weights for R, G, B (as PIL's ``convert("L")``)."""

CROP_TRIES = 10
"""Rejection-sampling tries per crop box before the centre-crop fallback (as torchvision)."""

# Columns of the per-sample uniform draw, (B, N_UNIFORMS): one ``torch.rand`` call per batch.
_CROP = slice(0, 2 * CROP_TRIES + 2)  # area + log-ratio per try, then top + left
_FLIP = 2 * CROP_TRIES + 2
_JITTER_APPLY = _FLIP + 1
_JITTER = slice(_JITTER_APPLY + 1, _JITTER_APPLY + 5)  # brightness, contrast, saturation, hue
_GRAY = _JITTER_APPLY + 5
_BLUR_APPLY = _GRAY + 1
_BLUR_SIGMA = _BLUR_APPLY + 1
N_UNIFORMS = _BLUR_SIGMA + 1


# ---------------------------------------------------------------------------------------------
# Argument checks (shared by the class and eval_transform)
# ---------------------------------------------------------------------------------------------


def _check_out_size(out_size: int) -> None:
    if isinstance(out_size, bool) or not isinstance(out_size, int) or out_size <= 0:
        raise ValueError(f"out_size must be a positive int, got {out_size!r}")


def _check_mean_std(mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (R, G, B), got mean={mean!r}, std={std!r}")
    if not all(math.isfinite(m) for m in mean):
        raise ValueError(f"mean must be finite, got {mean!r}")
    if not all(math.isfinite(s) and s > 0 for s in std):
        raise ValueError(f"std values must be finite and > 0, got {std!r}")


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} is a probability and must be in [0, 1], got {p!r}")


def _check_range(name: str, bounds: tuple[float, float], upper: float | None = None) -> None:
    lo, hi = bounds
    if not 0.0 < lo <= hi or (upper is not None and hi > upper):
        span = f"(0, {upper}]" if upper is not None else "(0, inf)"
        raise ValueError(f"{name} must be (lo, hi) with lo <= hi, both in {span}, got {bounds!r}")


def _check_images(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must be uint8 (B, 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )


# ---------------------------------------------------------------------------------------------
# Random resized crop + flip
# ---------------------------------------------------------------------------------------------


def crop_boxes(
    uniforms: torch.Tensor,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> torch.Tensor:
    """Crop boxes ``(top, left, h, w)`` in whole pixels, as torchvision's RandomResizedCrop.

    ``uniforms`` is (B, 2 * tries + 2) of U[0, 1): per try an area fraction (uniform in
    ``scale``) and a log-uniform aspect ratio ``w / h`` in ``ratio``; the first try whose box fits
    the image wins, its position drawn from the last two columns. Where no try fits, the centre
    crop with the aspect ratio clipped to ``ratio``. Returns float32 (B, 4).
    """
    tries = (uniforms.shape[1] - 2) // 2
    area = float(height * width)
    u_area = uniforms[:, 0 : 2 * tries : 2]  # (B, tries)
    u_ratio = uniforms[:, 1 : 2 * tries : 2]  # (B, tries)
    target = area * (scale[0] + (scale[1] - scale[0]) * u_area)  # (B, tries)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)  # (B, tries)
    w = torch.round(torch.sqrt(target * aspect))  # (B, tries)
    h = torch.round(torch.sqrt(target / aspect))  # (B, tries)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # (B, tries)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # (B, 1) first fitting try
    w = w.gather(1, first).squeeze(1)  # (B,)
    h = h.gather(1, first).squeeze(1)  # (B,)
    any_fits = fits.any(dim=1)  # (B,)

    in_ratio = width / height
    if in_ratio < ratio[0]:
        fb_w, fb_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fb_w, fb_h = round(height * ratio[1]), height
    else:
        fb_w, fb_h = width, height
    w = torch.where(any_fits, w, torch.full_like(w, fb_w))  # (B,)
    h = torch.where(any_fits, h, torch.full_like(h, fb_h))  # (B,)

    u_top, u_left = uniforms[:, 2 * tries], uniforms[:, 2 * tries + 1]  # (B,), (B,)
    top = torch.floor(u_top * (height - h + 1)).clamp(max=height - h)  # (B,)
    left = torch.floor(u_left * (width - w + 1)).clamp(max=width - w)  # (B,)
    top = torch.where(any_fits, top, torch.div(height - h, 2, rounding_mode="floor"))  # (B,)
    left = torch.where(any_fits, left, torch.div(width - w, 2, rounding_mode="floor"))  # (B,)
    return torch.stack([top, left, h, w], dim=1)  # (B, 4)


def crop_grid(
    boxes: torch.Tensor, flip: torch.Tensor, height: int, width: int, out_size: int
) -> torch.Tensor:
    """Sampling grid (B, S, S, 2) for ``grid_sample`` (align_corners=False) that maps the output
    square onto each box ``(top, left, h, w)`` of an (H, W) image, mirrored left-right where
    ``flip`` is True. Same grid as ``F.affine_grid`` with the box's scale/translation matrix,
    built from two small (B, S) rows instead of a (B, S*S, 3) @ (3, 2) product."""
    top, left, h, w = boxes.unbind(dim=1)  # (B,) each
    sx = torch.where(flip, -w, w) / width  # (B,) half-width in [-1, 1] coordinates, < 0 = flip
    sy = h / height  # (B,)
    cx = (2.0 * left + w) / width - 1.0  # (B,) box centre in [-1, 1]
    cy = (2.0 * top + h) / height - 1.0  # (B,)
    steps = (2.0 * torch.arange(out_size, device=boxes.device, dtype=boxes.dtype) + 1.0) / out_size
    base = steps - 1.0  # (S,) output pixel centres in [-1, 1]
    grid = boxes.new_empty((boxes.shape[0], out_size, out_size, 2))  # (B, S, S, 2)
    grid[..., 0] = (cx.unsqueeze(1) + sx.unsqueeze(1) * base).unsqueeze(1)  # (B, 1, S) over rows
    grid[..., 1] = (cy.unsqueeze(1) + sy.unsqueeze(1) * base).unsqueeze(2)  # (B, S, 1) over cols
    return grid


def resized_crop(
    images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, out_size: int
) -> torch.Tensor:
    """Crop each float image (B, C, H, W) to its box, resize bilinearly to ``out_size`` and flip
    where asked, all in one ``grid_sample``. Returns (B, C, out_size, out_size)."""
    height, width = images.shape[-2:]
    grid = crop_grid(boxes.to(images.dtype), flip, height, width, out_size)  # (B, S, S, 2)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode="border", align_corners=False
    )  # (B, C, S, S)


# ---------------------------------------------------------------------------------------------
# Colour ops on float images in [0, 1] with per-sample factors (B,).
# The public functions return new tensors; the ``_``-suffixed ones work in place and are what
# MocoV2Augment runs: on CPU a fresh 1 MB tensor costs more (page faults) than the arithmetic.
# ---------------------------------------------------------------------------------------------


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma of RGB images (B, 3, H, W) -> (B, 1, H, W)."""
    r, g, b = images.unbind(dim=1)  # (B, H, W) each
    luma = (r * LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2])  # (B, H, W)
    return luma.unsqueeze(1)  # (B, 1, H, W)


def _per_sample(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1)  # (B, 1, 1, 1)


def _brightness_(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return x.mul_(_per_sample(factor)).clamp_(0.0, 1.0)  # (B, 3, H, W)


def _contrast_(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(2, 3)) @ x.new_tensor(LUMA)  # (B,) mean luma = luma of the mean colour
    # factor * x + (1 - factor) * mean
    return x.lerp_(_per_sample(mean), _per_sample(1.0 - factor)).clamp_(0.0, 1.0)


def _saturation_(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # factor * x + (1 - factor) * gray
    return x.lerp_(grayscale(x), _per_sample(1.0 - factor)).clamp_(0.0, 1.0)  # (B, 3, H, W)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``images * factor``, clipped to [0, 1] (factor 1 = unchanged)."""
    return _brightness_(images.clone(), factor)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its mean luma (factor 0 = flat grey, 1 = unchanged), clipped."""
    return _contrast_(images.clone(), factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its grayscale version (factor 0 = gray, 1 = unchanged), clipped."""
    return _saturation_(images.clone(), factor)


# HSV is handled as (hue in sextants [0, 6), chroma = max - min, value = max): a hue rotation
# keeps chroma and value, so rotating needs neither saturation nor a materialised HSV image.


def _hue_sextant(images: torch.Tensor, value: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """Hue in sextants, (B, H, W) in [-1, 5): by max channel R, G, B it is
    (G - B) / chroma, 2 + (B - R) / chroma, 4 + (R - G) / chroma (R wins ties, then G, as
    colorsys). The branches are blended with 0/1 float masks (``torch.where`` is slower)."""
    r, g, b = images.unbind(dim=1)  # (B, H, W) each
    inv = chroma.clamp(min=1e-12).reciprocal_()  # (B, H, W); grey pixels get hue 0
    r_not_max = torch.lt(r, value, out=torch.empty_like(value))  # (B, H, W) 0.0 where R is max
    g_not_max = torch.lt(g, value, out=torch.empty_like(value))  # (B, H, W)
    hue_gb = (b - r).mul_(inv).add_(2.0)  # (B, H, W) in [1, 3], G is max
    hue_gb.lerp_((r - g).mul_(inv).add_(4.0), g_not_max)  # (B, H, W), B is max: [3, 5]
    return (g - b).mul_(inv).lerp_(hue_gb, r_not_max)  # (B, H, W), R is max: [-1, 1]


_HUE_ANCHORS = (3.0, 5.0, 1.0)  # hue sextant where R, G, B is lowest (cyan, magenta, yellow)


def _rgb_from_hue_(
    out: torch.Tensor, hue6: torch.Tensor, value: torch.Tensor, chroma: torch.Tensor
) -> torch.Tensor:
    """Write RGB (B, 3, H, W) into ``out`` from hue sextant (B, H, W) in [0, 6), value and chroma.

    Channel c is ``value - chroma * clip(2 - d_c, 0, 1)`` with d_c the circular distance
    (period 6) from the hue to the sextant where c is lowest; ``2 - d = |3 - |hue - anchor|| - 1``.
    """
    anchors = hue6.new_tensor(_HUE_ANCHORS).view(1, 3, 1, 1)  # (1, 3, 1, 1)
    torch.sub(hue6.unsqueeze(1), anchors, out=out)  # (B, 3, H, W) in (-6, 6)
    out.abs_().sub_(3.0).abs_().sub_(1.0).clamp_(0.0, 1.0)  # (B, 3, H, W) ramp in [0, 1]
    return out.mul_(chroma.unsqueeze(1)).neg_().add_(value.unsqueeze(1))  # (B, 3, H, W)


def _value_chroma(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    value = images.amax(dim=1)  # (B, H, W)
    chroma = images.amin(dim=1).neg_().add_(value)  # (B, H, W)
    return value, chroma


def _hue_(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    value, chroma = _value_chroma(x)  # (B, H, W) each
    hue6 = _hue_sextant(x, value, chroma)  # (B, H, W) in [-1, 5)
    hue6.add_(6.0 * shift.view(-1, 1, 1)).remainder_(6.0)  # (B, H, W) in [0, 6)
    return _rgb_from_hue_(x, hue6, value, chroma)  # (B, 3, H, W)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of each image by ``shift`` turns (in [-0.5, 0.5]; 0 = unchanged), as
    torchvision's ``adjust_hue``."""
    return _hue_(images.clone(), shift)


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """RGB (B, 3, H, W) in [0, 1] -> HSV (B, 3, H, W), every channel in [0, 1]."""
    value, chroma = _value_chroma(images)  # (B, H, W) each
    hue = _hue_sextant(images, value, chroma).div_(6.0).remainder_(1.0)  # (B, H, W)
    sat = chroma / value.clamp(min=1e-12)  # (B, H, W), 0 where value is 0
    return torch.stack([hue, sat, value], dim=1)  # (B, 3, H, W)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV (B, 3, H, W) in [0, 1] -> RGB (B, 3, H, W)."""
    hue, sat, value = hsv.unbind(dim=1)  # (B, H, W) each
    hue6 = torch.remainder(6.0 * hue, 6.0)  # (B, H, W) in [0, 6)
    return _rgb_from_hue_(torch.empty_like(hsv), hue6, value, value * sat)  # (B, 3, H, W)


# ---------------------------------------------------------------------------------------------
# Gaussian blur and normalize
# ---------------------------------------------------------------------------------------------


def blur_kernel_size(out_size: int) -> int:
    """Odd kernel size of about 10% of the image side, at least 3 (23 for 224, 7 for 64)."""
    size = max(3, round(0.1 * out_size))
    return size if size % 2 == 1 else size + 1


def gaussian_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised 1-D Gaussian kernels (B, size), one per sigma (B,)."""
    x = torch.arange(size, device=sigma.device, dtype=sigma.dtype) - (size // 2)  # (size,)
    weights = torch.exp(-0.5 * (x / sigma.unsqueeze(1)) ** 2)  # (B, size)
    return weights / weights.sum(dim=1, keepdim=True)  # (B, size)


def gaussian_blur(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Blur each image (B, C, H, W) with its own separable kernel (B, K), reflect padding, as one
    depthwise grouped conv per direction."""
    b, c, height, width = images.shape
    size = kernels.shape[1]
    pad = size // 2
    weight = kernels.repeat_interleave(c, dim=0)  # (B*C, K)
    flat = images.reshape(1, b * c, height, width)  # (1, B*C, H, W)
    flat = F.pad(flat, (pad, pad, pad, pad), mode="reflect")  # (1, B*C, H+2p, W+2p)
    flat = F.conv2d(flat, weight.view(b * c, 1, 1, size), groups=b * c)  # (1, B*C, H+2p, W)
    flat = F.conv2d(flat, weight.view(b * c, 1, size, 1), groups=b * c)  # (1, B*C, H, W)
    return flat.view(b, c, height, width)  # (B, C, H, W)


def _normalize_(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """In place ``(images - mean) / std`` per channel."""
    mean_t = images.new_tensor(mean).view(1, 3, 1, 1)  # (1, 3, 1, 1)
    std_t = images.new_tensor(std).view(1, 3, 1, 1)  # (1, 3, 1, 1)
    return images.sub_(mean_t).div_(std_t)  # (B, 3, H, W)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def eval_transform(
    images: torch.Tensor,
    out_size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> torch.Tensor:
    """Deterministic view for kNN / linear-probe features: uint8 (B, 3, H, W) -> float32
    normalized (B, 3, out_size, out_size). Resizes the shorter side to ``out_size`` (bilinear,
    antialiased; skipped when H == W == out_size), then centre-crops, as torchvision's
    ``Resize(out_size)`` + ``CenterCrop(out_size)``."""
    _check_out_size(out_size)
    _check_mean_std(mean, std)
    _check_images(images)
    x = images.to(torch.float32).div_(255.0)  # (B, 3, H, W)
    height, width = x.shape[-2:]
    if (height, width) != (out_size, out_size):
        if height <= width:
            size = (out_size, int(out_size * width / height))
        else:
            size = (int(out_size * height / width), out_size)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        x = x.clamp_(0.0, 1.0)  # (B, 3, h', w'): antialias taps can overshoot slightly
        top = round((size[0] - out_size) / 2.0)
        left = round((size[1] - out_size) / 2.0)
        x = x[:, :, top : top + out_size, left : left + out_size].contiguous()  # (B, 3, S, S)
    return _normalize_(x, mean, std)  # (B, 3, S, S)


class MocoV2Augment:
    """MoCo v2 training augmentation for a batch of uint8 images, one random draw per image.

    ``blur=None`` blurs only when ``out_size >= 64`` (CIFAR recipes drop blur at 32x32); the
    kernel is about 10% of ``out_size``, odd. ``jitter`` is (brightness, contrast, saturation,
    hue) as in torchvision's ColorJitter.
    """

    def __init__(
        self,
        out_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        crop_scale: tuple[float, float] = (0.2, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        jitter_p: float = 0.8,
        gray_p: float = 0.2,
        blur: bool | None = None,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        blur_p: float = 0.5,
        flip_p: float = 0.5,
    ) -> None:
        _check_out_size(out_size)
        _check_mean_std(mean, std)
        _check_range("crop_scale", crop_scale, upper=1.0)
        _check_range("crop_ratio", crop_ratio)
        if len(jitter) != 4 or any(j < 0 for j in jitter) or jitter[3] > 0.5:
            raise ValueError(
                "jitter must be (brightness, contrast, saturation, hue), all >= 0 and hue <= 0.5,"
                f" got {jitter!r}"
            )
        _check_range("blur_sigma", blur_sigma)
        if blur and out_size < 2:
            raise ValueError(f"blur needs out_size >= 2 (reflect padding), got {out_size}")
        for name, p in (
            ("jitter_p", jitter_p),
            ("gray_p", gray_p),
            ("blur_p", blur_p),
            ("flip_p", flip_p),
        ):
            _check_probability(name, p)
        self.out_size = out_size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.crop_scale = crop_scale
        self.crop_ratio = crop_ratio
        self.jitter = jitter
        self.jitter_p = jitter_p
        self.gray_p = gray_p
        self.blur = out_size >= 64 if blur is None else blur
        self.blur_sigma = blur_sigma
        self.blur_p = blur_p
        self.flip_p = flip_p
        self.blur_size = blur_kernel_size(out_size)

    def __repr__(self) -> str:
        return (
            f"MocoV2Augment(out_size={self.out_size}, crop_scale={self.crop_scale}, "
            f"crop_ratio={self.crop_ratio}, jitter={self.jitter}, jitter_p={self.jitter_p}, "
            f"gray_p={self.gray_p}, blur={self.blur}, blur_sigma={self.blur_sigma}, "
            f"blur_p={self.blur_p}, flip_p={self.flip_p})"
        )

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float32 normalized (B, 3, out_size, out_size)."""
        _check_images(images)
        b, _, height, width = images.shape
        u = torch.rand(
            (b, N_UNIFORMS), generator=generator, device=images.device
        )  # (B, N_UNIFORMS)

        boxes = crop_boxes(u[:, _CROP], height, width, self.crop_scale, self.crop_ratio)  # (B, 4)
        flip = u[:, _FLIP] < self.flip_p  # (B,)
        x = resized_crop(images.to(torch.float32), boxes, flip, self.out_size)  # (B, 3, S, S)
        x = x.mul_(1.0 / 255.0)  # (B, 3, S, S) in [0, 1]

        if self.jitter_p > 0 and any(j > 0 for j in self.jitter):
            x = self._color_jitter(x, u, generator)  # (B, 3, S, S)
        if self.gray_p > 0:
            gray = u[:, _GRAY] < self.gray_p  # (B,)
            x = x.lerp_(grayscale(x), _per_sample(gray.to(x.dtype)))  # (B, 3, S, S)
        if self.blur and self.blur_p > 0:
            lo, hi = self.blur_sigma
            sigma = lo + (hi - lo) * u[:, _BLUR_SIGMA]  # (B,)
            kernels = gaussian_kernels(sigma, self.blur_size)  # (B, K)
            identity = torch.zeros_like(kernels[:1])  # (1, K)
            identity[0, self.blur_size // 2] = 1.0
            blurred = u[:, _BLUR_APPLY] < self.blur_p  # (B,)
            kernels = torch.where(blurred.unsqueeze(1), kernels, identity)  # (B, K)
            x = gaussian_blur(x, kernels)  # (B, 3, S, S)
        return _normalize_(x, self.mean, self.std)  # (B, 3, S, S)

    def _color_jitter(
        self, x: torch.Tensor, u: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Brightness, contrast, saturation, hue in one random order per batch; samples drawn
        not to jitter get identity factors (1, 1, 1, 0)."""
        apply = u[:, _JITTER_APPLY] < self.jitter_p  # (B,)
        uj = u[:, _JITTER]  # (B, 4)
        ops: list[tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], torch.Tensor]] = []
        for col, (strength, adjust) in enumerate(
            zip(self.jitter[:3], (_brightness_, _contrast_, _saturation_), strict=True)
        ):
            if strength > 0:
                lo = max(0.0, 1.0 - strength)
                factor = lo + (1.0 + strength - lo) * uj[:, col]  # (B,)
                ops.append((adjust, torch.where(apply, factor, torch.ones_like(factor))))
        if self.jitter[3] > 0:
            shift = self.jitter[3] * (2.0 * uj[:, 3] - 1.0)  # (B,) in [-hue, hue]
            ops.append((_hue_, torch.where(apply, shift, torch.zeros_like(shift))))
        order = torch.randperm(len(ops), generator=generator, device=u.device).tolist()
        for i in order:
            adjust, factor = ops[i]
            x = adjust(x, factor)  # (B, 3, S, S)
        return x

    def two_views(
        self, images: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent augmentations of the same batch: (query view, key view)."""
        query = self(images, generator)  # (B, 3, S, S)
        key = self(images, generator)  # (B, 3, S, S)
        return query, key
