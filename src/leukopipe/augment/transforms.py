"""The study's nine offline augmentation transforms, split into *sample* and *apply*.

Every random number is drawn up front by :func:`sample_params` from a numpy Generator and
recorded in a plain, JSON-serialisable dict; :func:`apply_params` is then a pure function of
(image, params, config). That split is what makes each generated training image regenerable
bit-for-bit from the manifest, and makes the result independent of worker count or order.

Order and semantics follow Study A's augmentation protocol and torchvision.transforms.v2:

1. RandomHorizontalFlip(p)          applied when u < p
2. RandomVerticalFlip(p)            applied when u < p
3. RandomRotation(deg)              angle ~ U[-deg, deg]; nearest, fill 0 (torchvision defaults)
4. ColorJitter(b, c, s, h)          random order of the four adjustments (randperm(4)), then
                                    factors ~ U[1-b, 1+b], U[1-c, 1+c], U[1-s, 1+s], U[-h, h]
5. RandomResizedCrop(size, ...)     area/log-ratio sampling, at most 10 tries, centre-crop
                                    fallback; bilinear + antialias back to size x size
6. RandomAffine(0, translate, ...)  tx ~ round(U[-t*W, t*W]), ty likewise; scale ~ U[a, b];
                                    x-shear ~ U[-shear, shear], y-shear 0; nearest, fill 0
7. GaussianBlur(k, sigma)           sigma ~ U[lo, hi] (same sigma in x and y); always applied
8. RandomAdjustSharpness(f, p)      applied when u < p
9. RandomPerspective(d, p)          applied when u < p, then the four corner end points;
                                    bilinear, fill 0

Fill 0 is black, the C-NMC background, so geometric transforms add no artificial border.
A random draw that torchvision would skip (e.g. a disabled jitter component, or perspective
points when the coin says "no") is skipped here too.

Bit-identity: the same (image, params, config) gives the same bytes on the same software
stack; CPU kernels of different torch/torchvision versions or CPU instruction sets may round
differently, which is why the manifest also stores the pixels' source and the exact params.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as F  # noqa: N812  (torchvision's own idiom)
from torchvision.transforms import InterpolationMode

from leukopipe.plumbing.errors import InvalidInputError
from leukopipe.plumbing.schema import defaults

# Bump when the meaning of a params dict changes, so old manifests are rejected, not misread.
PARAMS_VERSION = 1

JITTER_NAMES = ("brightness", "contrast", "saturation", "hue")

# torchvision's default fill for these transforms is the number 0 (not None); the two differ
# at borders for bilinear sampling (torchvision issue 6517), so pass exactly what it passes.
_FILL = 0


_DEFAULTS = defaults("augment.transforms")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the nine transforms; the defaults are the study's values, kept in the
    config schema (``augment.transforms``)."""

    hflip_p: float = _DEFAULTS["hflip_p"]
    vflip_p: float = _DEFAULTS["vflip_p"]
    rotation_deg: float = _DEFAULTS["rotation_deg"]
    brightness: float = _DEFAULTS["brightness"]
    contrast: float = _DEFAULTS["contrast"]
    saturation: float = _DEFAULTS["saturation"]
    hue: float = _DEFAULTS["hue"]
    crop_scale: tuple[float, float] = tuple(_DEFAULTS["crop_scale"])
    crop_ratio: tuple[float, float] = tuple(_DEFAULTS["crop_ratio"])
    translate: float = _DEFAULTS["translate"]
    scale: tuple[float, float] = tuple(_DEFAULTS["scale"])
    shear_deg: float = _DEFAULTS["shear_deg"]
    blur_kernel: int = _DEFAULTS["blur_kernel"]
    blur_sigma: tuple[float, float] = tuple(_DEFAULTS["blur_sigma"])
    sharpness_factor: float = _DEFAULTS["sharpness_factor"]
    sharpness_p: float = _DEFAULTS["sharpness_p"]
    perspective_distortion: float = _DEFAULTS["perspective_distortion"]
    perspective_p: float = _DEFAULTS["perspective_p"]

    def __post_init__(self) -> None:
        for name in ("crop_scale", "crop_ratio", "scale", "blur_sigma"):
            # Lists (from YAML/JSON) become tuples so configs compare and hash by value.
            value = getattr(self, name)
            if not isinstance(value, list | tuple):
                raise InvalidInputError(
                    f"augment.transforms.{name} must be a pair [lo, hi], got {value!r}"
                )
            object.__setattr__(self, name, tuple(float(v) for v in value))
        problems = []
        for name in ("hflip_p", "vflip_p", "sharpness_p", "perspective_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name}={getattr(self, name)} must be a probability in [0, 1]")
        for name in ("rotation_deg", "brightness", "contrast", "saturation", "shear_deg",
                     "sharpness_factor"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} must be >= 0")
        if self.brightness > 1 or self.contrast > 1 or self.saturation > 1:
            # A jitter strength above 1 would allow negative factors (torchvision clips them).
            problems.append("brightness, contrast and saturation must be <= 1")
        if not 0.0 <= self.hue <= 0.5:
            problems.append(f"hue={self.hue} must be in [0, 0.5]")
        if not 0.0 <= self.translate <= 1.0:
            problems.append(f"translate={self.translate} must be a fraction in [0, 1]")
        if not 0.0 <= self.perspective_distortion <= 1.0:
            problems.append(
                f"perspective_distortion={self.perspective_distortion} must be in [0, 1]"
            )
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            problems.append(f"blur_kernel={self.blur_kernel} must be a positive odd integer")
        for name, lo_min in (("crop_scale", 0.0), ("crop_ratio", 0.0), ("scale", 0.0),
                             ("blur_sigma", 0.0)):
            pair = getattr(self, name)
            if len(pair) != 2 or not (lo_min < pair[0] <= pair[1]):
                problems.append(f"{name}={list(pair)} must be two increasing positive numbers")
        if self.crop_scale[1] > 1.0:
            problems.append(f"crop_scale={list(self.crop_scale)} must not exceed 1.0")
        if problems:
            raise InvalidInputError("Invalid augment.transforms settings: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> AugmentConfig:
        """Build from the config section ``augment.transforms`` (field names; lists allowed)."""
        d = dict(d or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise InvalidInputError(
                f"Unknown key(s) in augment.transforms: {unknown}; allowed keys: {sorted(fields)}"
            )
        kwargs: dict[str, Any] = {}
        for name, value in d.items():
            default = fields[name].default
            if isinstance(default, tuple):
                if not isinstance(value, list | tuple) or len(value) != 2:
                    raise InvalidInputError(
                        f"augment.transforms.{name} must be a pair [lo, hi], got {value!r}"
                    )
                kwargs[name] = (float(value[0]), float(value[1]))
            elif isinstance(default, int):
                if isinstance(value, bool) or int(value) != value:
                    raise InvalidInputError(
                        f"augment.transforms.{name} must be an integer, got {value!r}"
                    )
                kwargs[name] = int(value)
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise InvalidInputError(
                        f"augment.transforms.{name} must be a number, got {value!r}"
                    )
                kwargs[name] = float(value)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists), e.g. for Snakemake params or provenance records."""
        items = dataclasses.asdict(self).items()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in items}


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _sample_crop(
    rng: np.random.Generator, height: int, width: int, cfg: AugmentConfig
) -> dict[str, Any]:
    """torchvision RandomResizedCrop.make_params, with numpy draws."""
    area = height * width
    log_lo, log_hi = math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])
    for _ in range(10):
        target_area = area * _uniform(rng, cfg.crop_scale[0], cfg.crop_scale[1])
        aspect_ratio = math.exp(_uniform(rng, log_lo, log_hi))
        w = round(math.sqrt(target_area * aspect_ratio))
        h = round(math.sqrt(target_area / aspect_ratio))
        if 0 < w <= width and 0 < h <= height:
            i = int(rng.integers(0, height - h + 1))
            j = int(rng.integers(0, width - w + 1))
            return {"crop_top": i, "crop_left": j, "crop_height": h, "crop_width": w,
                    "crop_fallback": False}
    # Fallback to a central crop, exactly as torchvision does.
    in_ratio = float(width) / float(height)
    if in_ratio < min(cfg.crop_ratio):
        w = width
        h = round(w / min(cfg.crop_ratio))
    elif in_ratio > max(cfg.crop_ratio):
        h = height
        w = round(h * max(cfg.crop_ratio))
    else:
        w, h = width, height
    return {"crop_top": (height - h) // 2, "crop_left": (width - w) // 2, "crop_height": h,
            "crop_width": w, "crop_fallback": True}


def _perspective_points(size: int) -> list[list[int]]:
    return [[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]]


def _sample_perspective(rng: np.random.Generator, size: int, distortion: float) -> list[list[int]]:
    """torchvision RandomPerspective.make_params end points (draw order preserved)."""
    height = width = size
    bound_h = int(distortion * (height // 2)) + 1
    bound_w = int(distortion * (width // 2)) + 1

    def r(lo: int, hi: int) -> int:
        return int(rng.integers(lo, hi))

    topleft = [r(0, bound_w), r(0, bound_h)]
    topright = [r(width - bound_w, width), r(0, bound_h)]
    botright = [r(width - bound_w, width), r(height - bound_h, height)]
    botleft = [r(0, bound_w), r(height - bound_h, height)]
    return [topleft, topright, botright, botleft]


def sample_params(rng: np.random.Generator, size: int, cfg: AugmentConfig) -> dict[str, Any]:
    """Draw every random parameter of the nine transforms, in protocol order.

    The result holds only ints, floats, bools, lists and (for the perspective end points when
    that transform is not applied) None, and fully determines :func:`apply_params`' output.
    """
    if size < 2:
        raise ValueError(f"sample_params: size must be at least 2 pixels, got {size}")
    p: dict[str, Any] = {"version": PARAMS_VERSION, "size": int(size)}
    # 1-2. flips (torchvision: skip when rand >= p)
    p["hflip"] = bool(rng.random() < cfg.hflip_p)
    p["vflip"] = bool(rng.random() < cfg.vflip_p)
    # 3. rotation (torchvision draws even for a [0, 0] range)
    p["rotation_angle"] = _uniform(rng, -cfg.rotation_deg, cfg.rotation_deg)
    # 4. colour jitter: order first, then the four factors; disabled components draw nothing
    p["jitter_order"] = [JITTER_NAMES[k] for k in rng.permutation(4).tolist()]
    p["brightness"] = (
        _uniform(rng, max(0.0, 1 - cfg.brightness), 1 + cfg.brightness) if cfg.brightness else 1.0
    )
    p["contrast"] = (
        _uniform(rng, max(0.0, 1 - cfg.contrast), 1 + cfg.contrast) if cfg.contrast else 1.0
    )
    p["saturation"] = (
        _uniform(rng, max(0.0, 1 - cfg.saturation), 1 + cfg.saturation) if cfg.saturation else 1.0
    )
    p["hue"] = _uniform(rng, -cfg.hue, cfg.hue) if cfg.hue else 0.0
    # 5. random resized crop on the (size x size) image
    p.update(_sample_crop(rng, size, size, cfg))
    # 6. affine with degrees 0: angle drawn from U[0, 0] is 0, so nothing to draw for it
    max_d = float(cfg.translate * size)
    tx = round(_uniform(rng, -max_d, max_d))
    ty = round(_uniform(rng, -max_d, max_d))
    p["affine_translate"] = [tx, ty]
    p["affine_scale"] = _uniform(rng, cfg.scale[0], cfg.scale[1])
    p["affine_shear"] = [_uniform(rng, -cfg.shear_deg, cfg.shear_deg), 0.0]
    # 7. gaussian blur
    p["blur_sigma"] = _uniform(rng, cfg.blur_sigma[0], cfg.blur_sigma[1])
    # 8. sharpness
    p["sharpen"] = bool(rng.random() < cfg.sharpness_p)
    # 9. perspective: points are drawn only when the transform is applied
    p["perspective"] = bool(rng.random() < cfg.perspective_p)
    p["perspective_endpoints"] = (
        _sample_perspective(rng, size, cfg.perspective_distortion) if p["perspective"] else None
    )
    return p


def neutral_params(size: int) -> dict[str, Any]:
    """Params under which :func:`apply_params` returns the input unchanged.

    Not a draw of the protocol (blur is always on there; ``blur_sigma`` 0 switches it off).
    Useful to test one transform at a time and to document the meaning of every key.
    """
    return {
        "version": PARAMS_VERSION, "size": int(size), "hflip": False, "vflip": False,
        "rotation_angle": 0.0, "jitter_order": list(JITTER_NAMES), "brightness": 1.0,
        "contrast": 1.0, "saturation": 1.0, "hue": 0.0, "crop_top": 0, "crop_left": 0,
        "crop_height": int(size), "crop_width": int(size), "crop_fallback": False,
        "affine_translate": [0, 0], "affine_scale": 1.0, "affine_shear": [0.0, 0.0],
        "blur_sigma": 0.0, "sharpen": False, "perspective": False, "perspective_endpoints": None,
    }


def _check_params(img: np.ndarray, params: Mapping[str, Any]) -> int:
    if params.get("version") != PARAMS_VERSION:
        raise InvalidInputError(
            f"Augmentation params have version {params.get('version')!r}, this code reads "
            f"version {PARAMS_VERSION}; rerun the augment step to regenerate the manifest."
        )
    size = int(params["size"])
    if img.dtype != np.uint8 or img.shape != (size, size, 3):
        raise ValueError(
            f"apply_params expects a uint8 image of shape ({size}, {size}, 3) as recorded in the "
            f"params, got {img.dtype} {tuple(img.shape)}"
        )
    return size


def apply_params(img: np.ndarray, params: Mapping[str, Any], cfg: AugmentConfig) -> np.ndarray:
    """Apply the nine transforms with recorded ``params`` to a uint8 HWC image; uint8 HWC out.

    Exactly-neutral steps are skipped (they would only resample the image onto itself).
    """
    size = _check_params(img, params)
    # The blur and sharpness kernels are small grouped convolutions: oneDNN is ~10x slower on
    # them than torch's native CPU kernel, and pinning one backend here keeps regeneration
    # bit-identical whatever the caller's setting. The caller's setting is restored after.
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        return _apply(img, params, cfg, size)
    finally:
        torch.backends.mkldnn.enabled = previous


def _apply(img: np.ndarray, params: Mapping[str, Any], cfg: AugmentConfig, size: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()
    if params["hflip"]:
        t = F.horizontal_flip(t)
    if params["vflip"]:
        t = F.vertical_flip(t)
    if params["rotation_angle"] != 0.0:
        t = F.rotate(t, float(params["rotation_angle"]), interpolation=InterpolationMode.NEAREST,
                     expand=False, center=None, fill=_FILL)
    for name in params["jitter_order"]:
        if name == "brightness" and params["brightness"] != 1.0:
            t = F.adjust_brightness(t, brightness_factor=float(params["brightness"]))
        elif name == "contrast" and params["contrast"] != 1.0:
            t = F.adjust_contrast(t, contrast_factor=float(params["contrast"]))
        elif name == "saturation" and params["saturation"] != 1.0:
            t = F.adjust_saturation(t, saturation_factor=float(params["saturation"]))
        elif name == "hue" and params["hue"] != 0.0:
            t = F.adjust_hue(t, hue_factor=float(params["hue"]))
    crop = (int(params["crop_top"]), int(params["crop_left"]), int(params["crop_height"]),
            int(params["crop_width"]))
    if crop != (0, 0, size, size):
        t = F.resized_crop(t, *crop, size=[size, size],
                           interpolation=InterpolationMode.BILINEAR, antialias=True)
    translate = [int(v) for v in params["affine_translate"]]
    shear = [float(v) for v in params["affine_shear"]]
    scale = float(params["affine_scale"])
    if translate != [0, 0] or scale != 1.0 or shear != [0.0, 0.0]:
        t = F.affine(t, angle=0.0, translate=translate, scale=scale, shear=shear,
                     interpolation=InterpolationMode.NEAREST, fill=_FILL, center=None)
    if params["blur_sigma"] > 0:
        sigma = float(params["blur_sigma"])
        t = F.gaussian_blur(t, kernel_size=[cfg.blur_kernel, cfg.blur_kernel], sigma=[sigma, sigma])
    if params["sharpen"]:
        t = F.adjust_sharpness(t, sharpness_factor=float(cfg.sharpness_factor))
    if params["perspective"]:
        t = F.perspective(t, startpoints=_perspective_points(size),
                          endpoints=[list(map(int, pt)) for pt in params["perspective_endpoints"]],
                          interpolation=InterpolationMode.BILINEAR, fill=_FILL)
    out = t.permute(1, 2, 0).contiguous().numpy()
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    return out


def augment_one(
    img: np.ndarray, seed: int, cfg: AugmentConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """Sample params with ``np.random.default_rng(seed)`` and apply them; return (image, params)."""
    size = int(img.shape[0])
    params = sample_params(np.random.default_rng(seed), size, cfg)
    return apply_params(img, params, cfg), params
