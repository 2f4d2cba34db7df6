"""Tests for the batched MoCo v2 augmentation: invariants, golden configurations and slow
per-sample references (colorsys, torchvision functional ops, F.interpolate per crop)."""

from __future__ import annotations

import colorsys
import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
import torchvision.transforms.v2.functional as TF  # noqa: E402

from hardstat.train.augment import (  # noqa: E402
    LUMA,
    MocoV2Augment,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    blur_kernel_size,
    crop_boxes,
    crop_grid,
    eval_transform,
    gaussian_blur,
    gaussian_kernels,
    grayscale,
    hsv_to_rgb,
    resized_crop,
    rgb_to_hsv,
)

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
CROP_COLUMNS = 22  # 10 tries x (area, ratio) + (top, left)


def _images(seed: int, b: int = 8, h: int = 32, w: int = 32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), generator=gen, dtype=torch.uint8)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _still(out_size: int = 32, **overrides: object) -> MocoV2Augment:
    """An augmentation that does nothing random unless ``overrides`` switch something on."""
    kwargs: dict[str, object] = {
        "crop_scale": (1.0, 1.0),
        "crop_ratio": (1.0, 1.0),
        "jitter_p": 0.0,
        "gray_p": 0.0,
        "blur": False,
        "flip_p": 0.0,
    }
    kwargs.update(overrides)
    return MocoV2Augment(out_size, MEAN, STD, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# The whole pipeline
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w", "out_size"), [(32, 32, 32), (40, 56, 24), (80, 64, 64)])
def test_output_shape_dtype_device(h: int, w: int, out_size: int) -> None:
    aug = MocoV2Augment(out_size, MEAN, STD)
    out = aug(_images(0, b=5, h=h, w=w), _gen(0))
    assert out.shape == (5, 3, out_size, out_size)
    assert out.dtype == torch.float32
    assert out.device == torch.device("cpu")
    assert out.is_contiguous()
    assert torch.isfinite(out).all()
    # normalized [0, 1] pixels stay within the normalized image of [0, 1]
    lo = torch.tensor([-m / s for m, s in zip(MEAN, STD, strict=True)]).view(1, 3, 1, 1)
    hi = torch.tensor([(1 - m) / s for m, s in zip(MEAN, STD, strict=True)]).view(1, 3, 1, 1)
    assert (out >= lo - 1e-5).all() and (out <= hi + 1e-5).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_with_cuda_generator() -> None:
    aug = MocoV2Augment(64, MEAN, STD)  # blur on at 64
    images = _images(0, b=6, h=72, w=80).cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    query, key = aug.two_views(images, gen)
    assert query.device.type == "cuda" and query.shape == (6, 3, 64, 64)
    assert not torch.equal(query, key)
    again = aug(images, torch.Generator(device="cuda").manual_seed(0))
    assert torch.equal(again, query)


def test_same_seed_same_output_other_seed_other_output() -> None:
    aug = MocoV2Augment(32, MEAN, STD)
    images = _images(1, b=16)
    first = aug(images, _gen(7))
    assert torch.equal(first, aug(images, _gen(7)))
    assert not torch.allclose(first, aug(images, _gen(8)))


def test_blur_pipeline_is_deterministic_too() -> None:
    aug = MocoV2Augment(64, MEAN, STD, blur_p=1.0)
    assert aug.blur
    images = _images(2, b=4, h=64, w=64)
    assert torch.equal(aug(images, _gen(3)), aug(images, _gen(3)))


def test_two_views_differ_and_are_two_calls() -> None:
    aug = MocoV2Augment(32, MEAN, STD)
    images = _images(2, b=16)
    query, key = aug.two_views(images, _gen(0))
    assert query.shape == key.shape == (16, 3, 32, 32)
    assert not torch.allclose(query, key)
    gen = _gen(0)
    assert torch.equal(query, aug(images, gen))
    assert torch.equal(key, aug(images, gen))


def test_each_image_gets_its_own_draw() -> None:
    one = _images(3, b=1)
    out = MocoV2Augment(32, MEAN, STD)(one.expand(32, -1, -1, -1).contiguous(), _gen(0))
    flat = out.flatten(1)  # (32, D)
    distinct = {tuple(row.tolist()) for row in flat}
    assert len(distinct) == 32


@pytest.mark.parametrize("size", [32, 16])  # identity resize, and an upsampling resize
def test_no_randomness_equals_eval_transform(size: int) -> None:
    images = _images(4, b=6, h=size, w=size)
    out = _still()(images, _gen(0))
    expected = eval_transform(images, 32, MEAN, STD)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_flip_only_equals_flipped_eval_view() -> None:
    images = _images(5, b=6)
    out = _still(flip_p=1.0)(images, _gen(0))
    expected = torch.flip(eval_transform(images, 32, MEAN, STD), dims=[3])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_gray_only_gives_three_equal_luma_channels() -> None:
    images = _images(6, b=6)
    aug = MocoV2Augment(
        32,
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        jitter_p=0.0,
        gray_p=1.0,
        blur=False,
        flip_p=0.0,
    )
    pixels = aug(images, _gen(0)) * 0.5 + 0.5  # back to [0, 1]
    rgb = images.double() / 255.0
    luma = LUMA[0] * rgb[:, 0] + LUMA[1] * rgb[:, 1] + LUMA[2] * rgb[:, 2]  # (B, H, W)
    for channel in range(3):
        torch.testing.assert_close(pixels[:, channel].double(), luma, atol=1e-5, rtol=0)


def test_jitter_is_per_sample_and_uniform_over_the_image() -> None:
    """Jitter alone (full crop, no flip) keeps a flat grey image flat, at a per-sample level."""
    grey = torch.full((64, 3, 32, 32), 120, dtype=torch.uint8)
    out = _still(jitter_p=1.0)(grey, _gen(0))
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out), atol=1e-5)
    # brightness varies across samples
    assert out[:, 0, 0, 0].std() > 0.1


def test_gaussian_blur_on_by_default_only_from_64() -> None:
    assert not MocoV2Augment(32, MEAN, STD).blur
    assert MocoV2Augment(64, MEAN, STD).blur
    assert MocoV2Augment(32, MEAN, STD, blur=True).blur
    assert blur_kernel_size(224) == 23
    assert blur_kernel_size(64) == 7
    assert blur_kernel_size(32) == 3


# ---------------------------------------------------------------------------------------------
# Crop boxes and the resized crop
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "scale", "ratio"),
    [
        (32, 32, (0.2, 1.0), (3 / 4, 4 / 3)),
        (256, 256, (0.08, 1.0), (3 / 4, 4 / 3)),
        (375, 500, (0.2, 0.6), (0.5, 2.0)),
    ],
)
def test_crop_boxes_fit_the_image_and_the_ranges(
    h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> None:
    u = torch.rand(20_000, CROP_COLUMNS, generator=_gen(0))
    top, left, bh, bw = crop_boxes(u, h, w, scale, ratio).unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + bh <= h).all() and (left + bw <= w).all()
    assert (bh >= 1).all() and (bw >= 1).all()
    for value in (top, left, bh, bw):
        assert torch.equal(value, value.round())
    # whole-pixel rounding moves each side by at most 0.5 px
    area = bh * bw / (h * w)
    slack_area = (bh + bw + 1) / (2 * h * w)
    assert (area >= scale[0] - slack_area).all() and (area <= scale[1] + slack_area).all()
    aspect = bw / bh
    slack_ratio = 0.5 / bh + 0.5 * bw / bh**2 + 0.01
    assert (aspect >= ratio[0] - slack_ratio * 2).all()
    assert (aspect <= ratio[1] + slack_ratio * 2).all()


def test_crop_box_area_distribution_matches_uniform_scale() -> None:
    """No try is rejected for these ranges, so the area fraction is ~U(0.2, 0.5)."""
    u = torch.rand(20_000, CROP_COLUMNS, generator=_gen(1))
    _, _, bh, bw = crop_boxes(u, 256, 256, (0.2, 0.5), (3 / 4, 4 / 3)).unbind(1)
    area = bh * bw / 256**2
    assert abs(area.mean().item() - 0.35) < 0.005
    assert abs(area.quantile(0.25).item() - 0.275) < 0.01
    log_ratio = torch.log(bw / bh)
    assert abs(log_ratio.mean().item()) < 0.01
    # positions cover the free range uniformly: top / (H - h) averages 1/2
    top = crop_boxes(u, 256, 256, (0.2, 0.5), (3 / 4, 4 / 3))[:, 0]
    assert abs((top / (256 - bh)).mean().item() - 0.5) < 0.02


def test_crop_positions_cover_every_offset_uniformly() -> None:
    """A 16 x 16 box in a 32 x 32 image can start at any of 17 rows and columns."""
    u = torch.rand(17_000, CROP_COLUMNS, generator=_gen(6))
    boxes = crop_boxes(u, 32, 32, (0.25, 0.25), (1.0, 1.0))
    assert (boxes[:, 2:] == 16).all()
    for column in (0, 1):
        counts = torch.bincount(boxes[:, column].long(), minlength=17)
        assert counts.shape == (17,)
        assert counts.min() > 800 and counts.max() < 1200  # expected 1000 each


def test_crop_boxes_fall_back_to_a_centre_crop() -> None:
    """A 10 x 100 strip cannot hold a square of 90% of its area: centre square crop."""
    u = torch.rand(100, CROP_COLUMNS, generator=_gen(2))
    boxes = crop_boxes(u, 10, 100, (0.9, 1.0), (1.0, 1.0))
    expected = torch.tensor([0.0, 45.0, 10.0, 10.0]).expand(100, 4)
    assert torch.equal(boxes, expected)


def test_crop_boxes_take_the_first_try_that_fits() -> None:
    u = torch.zeros(1, CROP_COLUMNS)
    u[0, 0] = 1.0  # try 1: area = scale hi = 1.0 with ratio lo 3/4 -> w 28, h 37 > 32: rejected
    u[0, 2], u[0, 3] = 0.0, 0.5  # try 2: area 0.2 * 1024, ratio 1 -> 14 x 14
    u[0, 4:20] = 1.0  # later tries would be rejected anyway
    u[0, 20], u[0, 21] = 0.0, 0.999  # top 0, left at the far end
    box = crop_boxes(u, 32, 32, (0.2, 1.0), (3 / 4, 4 / 3))[0].tolist()
    side = round(math.sqrt(0.2 * 1024))
    assert box == [0.0, 32.0 - side, side, side]


def test_crop_grid_equals_affine_grid() -> None:
    gen = _gen(3)
    u = torch.rand(64, CROP_COLUMNS, generator=gen)
    boxes = crop_boxes(u, 40, 56, (0.2, 1.0), (3 / 4, 4 / 3))
    flip = torch.rand(64, generator=gen) < 0.5
    top, left, h, w = boxes.unbind(1)
    sx = torch.where(flip, -w, w) / 56
    zero = torch.zeros_like(sx)
    theta = torch.stack(
        [
            torch.stack([sx, zero, (2 * left + w) / 56 - 1], dim=1),
            torch.stack([zero, h / 40, (2 * top + h) / 40 - 1], dim=1),
        ],
        dim=1,
    )  # (B, 2, 3)
    expected = F.affine_grid(theta, [64, 3, 24, 24], align_corners=False)
    torch.testing.assert_close(crop_grid(boxes, flip, 40, 56, 24), expected, atol=1e-6, rtol=0)


def test_resized_crop_matches_a_per_image_loop() -> None:
    """Crops larger than the output (downsampling) read only their box: the batched grid sample
    equals slicing each box and resizing it with F.interpolate, then flipping."""
    images = _images(7, b=16, h=64, w=64).float() / 255.0
    gen = _gen(4)
    boxes = crop_boxes(
        torch.rand(16, CROP_COLUMNS, generator=gen), 64, 64, (0.2, 1.0), (0.75, 1.34)
    )
    flip = torch.rand(16, generator=gen) < 0.5
    out = resized_crop(images, boxes, flip, 16)
    for i in range(16):
        top, left, h, w = (int(v) for v in boxes[i].tolist())
        crop = images[i : i + 1, :, top : top + h, left : left + w]
        ref = F.interpolate(crop, size=(16, 16), mode="bilinear", align_corners=False)
        if flip[i]:
            ref = ref.flip(3)
        torch.testing.assert_close(out[i : i + 1], ref, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------
# Colour ops
# ---------------------------------------------------------------------------------------------


def _float_images(seed: int, b: int = 6, size: int = 12) -> torch.Tensor:
    x = torch.rand(b, 3, size, size, generator=_gen(seed))
    x[0, :, 0, 0] = 0.5  # grey
    x[0, :, 0, 1] = 0.0  # black
    x[0, :, 0, 2] = torch.tensor([1.0, 1.0, 0.0])  # R = G tie (yellow)
    x[0, :, 0, 3] = torch.tensor([0.2, 0.7, 0.7])  # G = B tie (cyan)
    x[0, :, 0, 4] = torch.tensor([0.9, 0.1, 0.9])  # R = B tie (magenta)
    return x


def test_rgb_hsv_round_trip_and_colorsys_reference() -> None:
    x = _float_images(0)
    hsv = rgb_to_hsv(x)
    torch.testing.assert_close(hsv_to_rgb(hsv), x, atol=1e-5, rtol=0)
    pixels = x.permute(0, 2, 3, 1).reshape(-1, 3).tolist()
    ref = torch.tensor([colorsys.rgb_to_hsv(*p) for p in pixels])  # (N, 3)
    got = hsv.permute(0, 2, 3, 1).reshape(-1, 3)
    hue_gap = (got[:, 0] - ref[:, 0]).abs()
    assert (torch.minimum(hue_gap, 1 - hue_gap) < 1e-5).all()
    torch.testing.assert_close(got[:, 1:], ref[:, 1:], atol=1e-5, rtol=0)
    back = torch.tensor([colorsys.hsv_to_rgb(*p) for p in got.tolist()])
    torch.testing.assert_close(back, torch.tensor(pixels), atol=1e-5, rtol=0)


def test_identity_factors_leave_images_unchanged() -> None:
    x = _float_images(1)
    ones, zeros = torch.ones(6), torch.zeros(6)
    torch.testing.assert_close(adjust_hue(x, zeros), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(adjust_brightness(x, ones), x, atol=0, rtol=0)
    torch.testing.assert_close(adjust_contrast(x, ones), x, atol=1e-6, rtol=0)
    torch.testing.assert_close(adjust_saturation(x, ones), x, atol=1e-6, rtol=0)
    # a full turn is also the identity, and the public ops do not touch their input
    before = x.clone()
    torch.testing.assert_close(adjust_hue(x, ones * 0.5).clone(), adjust_hue(x, -ones * 0.5))
    assert torch.equal(x, before)


def test_colour_ops_match_torchvision_per_image() -> None:
    x = _float_images(2)
    gen = _gen(5)
    factors = 0.6 + 0.8 * torch.rand(6, generator=gen)
    shifts = 0.2 * torch.rand(6, generator=gen) - 0.1
    bright = adjust_brightness(x, factors)
    contrast = adjust_contrast(x, factors)
    saturation = adjust_saturation(x, factors)
    hue = adjust_hue(x, shifts)
    for i in range(6):
        f, s = float(factors[i]), float(shifts[i])
        img = x[i]
        torch.testing.assert_close(bright[i], TF.adjust_brightness(img, f), atol=1e-6, rtol=0)
        # torchvision's tensor grayscale uses 0.2989 for R where ITU-R 601-2 says 0.299
        torch.testing.assert_close(contrast[i], TF.adjust_contrast(img, f), atol=2e-4, rtol=0)
        torch.testing.assert_close(saturation[i], TF.adjust_saturation(img, f), atol=2e-4, rtol=0)
        torch.testing.assert_close(hue[i], TF.adjust_hue(img, s), atol=1e-5, rtol=0)


def test_grayscale_is_601_luma() -> None:
    x = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]).view(3, 3, 1, 1)
    assert grayscale(x).flatten().tolist() == pytest.approx(list(LUMA))


def test_gaussian_blur_matches_torchvision_per_image() -> None:
    x = _float_images(3, b=4, size=20)
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0])
    size = blur_kernel_size(64)
    out = gaussian_blur(x, gaussian_kernels(sigma, size))
    for i in range(4):
        ref = TF.gaussian_blur(x[i], [size, size], [float(sigma[i])] * 2)
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)
    identity = torch.zeros(4, size)
    identity[:, size // 2] = 1.0
    torch.testing.assert_close(gaussian_blur(x, identity), x, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------
# eval_transform
# ---------------------------------------------------------------------------------------------


def test_eval_transform_matches_torchvision_resize_and_centre_crop() -> None:
    images = _images(8, b=3, h=40, w=56)
    out = eval_transform(images, 32, MEAN, STD)
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.float32
    ref = TF.resize(images.float() / 255.0, [32], antialias=True)
    ref = TF.center_crop(ref, [32, 32]).clamp(0, 1)
    ref = TF.normalize(ref, list(MEAN), list(STD))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_eval_transform_identity_size_is_plain_normalize() -> None:
    images = _images(9, b=3)
    expected = (images.float() / 255.0 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(
        STD
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(eval_transform(images, 32, MEAN, STD), expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"out_size": 0}, "out_size"),
        ({"out_size": -32}, "out_size"),
        ({"std": (0.2, 0.0, 0.2)}, "std"),
        ({"std": (0.2, -0.1, 0.2)}, "std"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
        ({"crop_scale": (0.2, 1.5)}, "crop_scale"),
        ({"crop_scale": (0.8, 0.2)}, "crop_scale"),
        ({"crop_ratio": (4 / 3, 3 / 4)}, "crop_ratio"),
        ({"crop_ratio": (0.0, 1.0)}, "crop_ratio"),
        ({"jitter": (0.4, 0.4, 0.4, 0.6)}, "jitter"),
        ({"jitter": (-0.1, 0.4, 0.4, 0.1)}, "jitter"),
        ({"jitter_p": 1.5}, "jitter_p"),
        ({"gray_p": -0.1}, "gray_p"),
        ({"blur_p": 2.0}, "blur_p"),
        ({"flip_p": float("nan")}, "flip_p"),
        ({"blur_sigma": (2.0, 0.1)}, "blur_sigma"),
    ],
)
def test_bad_constructor_arguments_raise_value_error(
    kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"out_size": 32, "mean": MEAN, "std": STD}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        MocoV2Augment(**args)  # type: ignore[arg-type]


def test_bad_images_and_eval_arguments_raise_value_error() -> None:
    aug = MocoV2Augment(32, MEAN, STD)
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.rand(2, 3, 32, 32), _gen(0))
    with pytest.raises(ValueError, match="uint8"):
        aug(_images(0)[:, :1], _gen(0))
    with pytest.raises(ValueError, match="out_size"):
        eval_transform(_images(0), 0, MEAN, STD)
    with pytest.raises(ValueError, match="std"):
        eval_transform(_images(0), 32, MEAN, (0.0, 1.0, 1.0))
