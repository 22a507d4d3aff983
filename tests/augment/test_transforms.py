"""The nine offline transforms: parameter ranges, one-at-a-time effects, torchvision parity,
determinism."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T  # noqa: N812
import torchvision.transforms.v2.functional as F  # noqa: N812

from leukopipe.augment.transforms import (
    JITTER_NAMES,
    AugmentConfig,
    apply_params,
    augment_one,
    neutral_params,
    sample_params,
)

SIZE = 224
N_DRAWS = 3000


def _cell_image(size: int = 64, seed: int = 0) -> np.ndarray:
    """An off-centre textured 'cell' on black: asymmetric, so flips and shifts are visible."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx, r = size * 0.42, size * 0.57, size * 0.3
    img = np.zeros((size, size, 3), np.uint8)
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    base = np.array([150, 90, 170], np.float64)
    tex = rng.normal(0, 30, (size, size, 3)) + 20 * np.sin(xx / 3.0)[..., None]
    img[mask] = np.clip(base + tex[mask], 0, 255).astype(np.uint8)
    img[2:6, 3:12] = (250, 240, 30)  # a bright marker in a corner
    return img


@pytest.fixture(scope="module")
def draws() -> list[dict]:
    rng = np.random.default_rng(12345)
    cfg = AugmentConfig()
    return [sample_params(rng, SIZE, cfg) for _ in range(N_DRAWS)]


def _assert_frequency(hits: int, n: int, p: float) -> None:
    sd = math.sqrt(n * p * (1 - p))
    assert abs(hits - n * p) <= 5 * sd, f"{hits}/{n} hits, expected p={p}"


# --------------------------------------------------------------------------- config
def test_defaults_are_the_study_values() -> None:
    c = AugmentConfig()
    assert (c.hflip_p, c.vflip_p, c.rotation_deg) == (0.5, 0.5, 25)
    assert (c.brightness, c.contrast, c.saturation, c.hue) == (0.3, 0.3, 0.3, 0.05)
    assert (c.crop_scale, c.crop_ratio) == ((0.7, 1.0), (0.75, 1.33))
    assert (c.translate, c.scale, c.shear_deg) == (0.05, (0.95, 1.05), 10)
    assert (c.blur_kernel, c.blur_sigma) == (3, (0.1, 2.0))
    assert (c.sharpness_factor, c.sharpness_p) == (2, 0.3)
    assert (c.perspective_distortion, c.perspective_p) == (0.2, 0.3)


def test_from_dict_accepts_lists_and_roundtrips() -> None:
    c = AugmentConfig.from_dict({"crop_scale": [0.5, 0.9], "rotation_deg": 10, "blur_kernel": 5})
    assert c.crop_scale == (0.5, 0.9) and c.rotation_deg == 10.0 and c.blur_kernel == 5
    assert AugmentConfig.from_dict(c.to_dict()) == c
    assert AugmentConfig.from_dict({}) == AugmentConfig()
    assert json.loads(json.dumps(AugmentConfig().to_dict()))["crop_ratio"] == [0.75, 1.33]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"rotation": 3}, "Unknown key"),
        ({"hflip_p": 1.5}, "hflip_p"),
        ({"blur_kernel": 4}, "blur_kernel"),
        ({"crop_scale": [0.9, 0.5]}, "crop_scale"),
        ({"crop_scale": 0.5}, "pair"),
        ({"hue": 0.7}, "hue"),
        ({"blur_kernel": 2.5}, "integer"),
    ],
)
def test_from_dict_rejects_bad_values(section: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AugmentConfig.from_dict(section)


# --------------------------------------------------------------------------- sampling
def test_params_are_plain_json_and_deterministic(draws: list[dict]) -> None:
    cfg = AugmentConfig()
    p = sample_params(np.random.default_rng(7), SIZE, cfg)
    assert json.loads(json.dumps(p)) == p
    assert sample_params(np.random.default_rng(7), SIZE, cfg) == p
    assert sample_params(np.random.default_rng(8), SIZE, cfg) != p

    def plain(v: object) -> bool:
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return v is None or type(v) in (int, float, bool, str)

    assert all(plain(v) for d in draws[:50] for v in d.values())


def test_flip_sharpness_perspective_frequencies(draws: list[dict]) -> None:
    _assert_frequency(sum(d["hflip"] for d in draws), N_DRAWS, 0.5)
    _assert_frequency(sum(d["vflip"] for d in draws), N_DRAWS, 0.5)
    _assert_frequency(sum(d["sharpen"] for d in draws), N_DRAWS, 0.3)
    _assert_frequency(sum(d["perspective"] for d in draws), N_DRAWS, 0.3)


def test_rotation_and_jitter_ranges(draws: list[dict]) -> None:
    angles = np.array([d["rotation_angle"] for d in draws])
    assert angles.min() >= -25 and angles.max() <= 25
    assert angles.min() < -23 and angles.max() > 23  # spans the range, not a constant
    for name in ("brightness", "contrast", "saturation"):
        v = np.array([d[name] for d in draws])
        assert v.min() >= 0.7 and v.max() <= 1.3 and v.std() > 0.15, name
    hue = np.array([d["hue"] for d in draws])
    assert hue.min() >= -0.05 and hue.max() <= 0.05 and hue.std() > 0.025
    orders = {tuple(d["jitter_order"]) for d in draws}
    assert orders == set(itertools.permutations(JITTER_NAMES))  # random order, all 24 seen


def test_crop_area_and_aspect(draws: list[dict]) -> None:
    full = SIZE * SIZE
    fallbacks = 0
    for d in draws:
        h, w, i, j = d["crop_height"], d["crop_width"], d["crop_top"], d["crop_left"]
        assert i >= 0 and i + h <= SIZE and j >= 0 and j + w <= SIZE
        if d["crop_fallback"]:
            # documented fallback: square input inside the ratio range -> the whole image
            fallbacks += 1
            assert (i, j, h, w) == (0, 0, SIZE, SIZE)
            continue
        # w and h are rounded to whole pixels, which moves the area by at most (w + h + 1) / 2
        slack = (w + h + 1) / 2
        assert 0.7 * full - slack <= h * w <= full
        assert 0.75 - 1 / h <= w / h <= 1.33 + 1 / h
    assert fallbacks < N_DRAWS * 0.01
    areas = np.array([d["crop_height"] * d["crop_width"] / full for d in draws])
    assert areas.min() < 0.72


def test_crop_fallback_is_torchvision_centre_crop() -> None:
    # scale 1 with ratio > 1 never fits a square, so all 10 tries fail
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.2, 1.33))
    d = sample_params(np.random.default_rng(0), 100, cfg)
    assert d["crop_fallback"] is True
    assert (d["crop_height"], d["crop_width"]) == (round(100 / 1.2), 100)
    assert (d["crop_top"], d["crop_left"]) == ((100 - round(100 / 1.2)) // 2, 0)


def test_affine_blur_perspective_ranges(draws: list[dict]) -> None:
    max_t = 0.05 * SIZE
    t = np.array([d["affine_translate"] for d in draws])
    assert np.abs(t).max() <= round(max_t) and np.abs(t).max() >= 10
    assert t.dtype.kind == "i"
    s = np.array([d["affine_scale"] for d in draws])
    assert s.min() >= 0.95 and s.max() <= 1.05 and s.std() > 0.02
    sh = np.array([d["affine_shear"] for d in draws])
    assert np.abs(sh[:, 0]).max() <= 10 and np.abs(sh[:, 0]).max() > 9.5
    assert (sh[:, 1] == 0).all()  # a single shear value is x-shear only, like torchvision
    sig = np.array([d["blur_sigma"] for d in draws])
    assert sig.min() >= 0.1 and sig.max() <= 2.0 and sig.std() > 0.4
    bound = int(0.2 * (SIZE // 2)) + 1
    for d in draws:
        if not d["perspective"]:
            assert d["perspective_endpoints"] is None
            continue
        (tlx, tly), (trx, try_), (brx, bry), (blx, bly) = d["perspective_endpoints"]
        assert 0 <= tlx < bound and 0 <= tly < bound
        assert SIZE - bound <= trx < SIZE and 0 <= try_ < bound
        assert SIZE - bound <= brx < SIZE and SIZE - bound <= bry < SIZE
        assert 0 <= blx < bound and SIZE - bound <= bly < SIZE


# --------------------------------------------------------------------------- applying
def _only(size: int, **changes: object) -> dict:
    p = neutral_params(size)
    p.update(changes)
    return p


def test_neutral_params_are_identity() -> None:
    img = _cell_image()
    out = apply_params(img, neutral_params(64), AugmentConfig())
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(out, img)


ONE_AT_A_TIME = {
    "hflip": {"hflip": True},
    "vflip": {"vflip": True},
    "rotation": {"rotation_angle": 17.0},
    "brightness": {"brightness": 1.25},
    "contrast": {"contrast": 0.75},
    "saturation": {"saturation": 1.3},
    "hue": {"hue": 0.04},
    "crop": {"crop_top": 5, "crop_left": 3, "crop_height": 50, "crop_width": 44},
    "translate": {"affine_translate": [3, -2]},
    "scale": {"affine_scale": 1.05},
    "shear": {"affine_shear": [8.0, 0.0]},
    "blur": {"blur_sigma": 1.5},
    "sharpen": {"sharpen": True},
    "perspective": {"perspective": True,
                    "perspective_endpoints": [[5, 3], [60, 1], [62, 58], [2, 61]]},
}


@pytest.mark.parametrize("name", sorted(ONE_AT_A_TIME))
def test_each_transform_changes_the_image_when_active(name: str) -> None:
    img = _cell_image()
    cfg = AugmentConfig()
    out = apply_params(img, _only(64, **ONE_AT_A_TIME[name]), cfg)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out, img), name


def test_flips_are_exact_mirrors() -> None:
    img = _cell_image()
    cfg = AugmentConfig()
    assert np.array_equal(apply_params(img, _only(64, hflip=True), cfg), img[:, ::-1])
    assert np.array_equal(apply_params(img, _only(64, vflip=True), cfg), img[::-1])


def _tv_reference(img: np.ndarray, p: dict, cfg: AugmentConfig) -> np.ndarray:
    """The same params pushed through torchvision's own transform classes, in protocol order."""
    size = p["size"]
    t = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    if p["hflip"]:
        t = F.horizontal_flip(t)
    if p["vflip"]:
        t = F.vertical_flip(t)
    t = T.RandomRotation(cfg.rotation_deg).transform(t, {"angle": p["rotation_angle"]})
    jitter = T.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)
    t = jitter.transform(t, {
        "fn_idx": torch.tensor([JITTER_NAMES.index(n) for n in p["jitter_order"]]),
        "brightness_factor": p["brightness"], "contrast_factor": p["contrast"],
        "saturation_factor": p["saturation"], "hue_factor": p["hue"],
    })
    rrc = T.RandomResizedCrop(size, scale=cfg.crop_scale, ratio=cfg.crop_ratio)
    t = rrc.transform(t, {"top": p["crop_top"], "left": p["crop_left"],
                          "height": p["crop_height"], "width": p["crop_width"]})
    aff = T.RandomAffine(0, translate=(cfg.translate, cfg.translate), scale=cfg.scale,
                         shear=cfg.shear_deg)
    t = aff.transform(t, {"angle": 0.0, "translate": tuple(p["affine_translate"]),
                          "scale": p["affine_scale"], "shear": tuple(p["affine_shear"])})
    t = T.GaussianBlur(cfg.blur_kernel, cfg.blur_sigma).transform(
        t, {"sigma": [p["blur_sigma"], p["blur_sigma"]]})
    if p["sharpen"]:
        t = T.RandomAdjustSharpness(cfg.sharpness_factor, p=1.0).transform(t, {})
    if p["perspective"]:
        t = F.perspective(t, [[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]],
                          p["perspective_endpoints"], interpolation=T.InterpolationMode.BILINEAR,
                          fill=T.RandomPerspective(cfg.perspective_distortion).fill)
    return t.permute(1, 2, 0).numpy()


def test_full_pipeline_matches_torchvision_classes() -> None:
    """Bit-exact against torchvision's classes fed the same params (native conv backend)."""
    img = _cell_image()
    cfg = AugmentConfig()
    seen_sharpen = seen_persp = 0
    previous = torch.backends.mkldnn.enabled
    for seed in range(40):
        out, p = augment_one(img, seed, cfg)
        torch.backends.mkldnn.enabled = False
        try:
            ref = _tv_reference(img, p, cfg)
        finally:
            torch.backends.mkldnn.enabled = previous
        assert np.array_equal(out, ref), f"seed {seed}: differs from torchvision"
        seen_sharpen += p["sharpen"]
        seen_persp += p["perspective"]
    assert seen_sharpen and seen_persp  # both optional transforms were exercised


def test_bit_identical_across_thread_counts_and_restores_backend_flag() -> None:
    img = _cell_image(96, seed=3)
    cfg = AugmentConfig()
    threads = torch.get_num_threads()
    mkldnn = torch.backends.mkldnn.enabled
    try:
        torch.set_num_threads(1)
        a = [augment_one(img, s, cfg)[0] for s in range(10)]
        torch.set_num_threads(2)
        b = [augment_one(img, s, cfg)[0] for s in range(10)]
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert len({x.tobytes() for x in a}) == 10  # different seeds, different images
    assert torch.backends.mkldnn.enabled == mkldnn


def test_apply_rejects_wrong_image_or_version() -> None:
    cfg = AugmentConfig()
    p = sample_params(np.random.default_rng(0), 64, cfg)
    with pytest.raises(ValueError, match=r"\(64, 64, 3\)"):
        apply_params(np.zeros((32, 32, 3), np.uint8), p, cfg)
    with pytest.raises(ValueError, match="uint8"):
        apply_params(np.zeros((64, 64, 3), np.float32), p, cfg)
    with pytest.raises(ValueError, match="version"):
        apply_params(np.zeros((64, 64, 3), np.uint8), {**p, "version": 99}, cfg)
