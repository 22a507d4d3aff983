"""A vision transformer's patch grid: the one rule for which image sizes suit its patches.

Torch-free, so the config check (workflow) and the model builder (train) both ask it without
the check importing torch."""

from __future__ import annotations

from typing import Any


def patch_size(model: Any) -> list[int] | None:
    """(height, width) of a timm model's patches (``patch_embed.patch_size``, an int for some
    families); None for a model without a patch embedding."""
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if not patch:
        return None
    return [int(patch)] * 2 if isinstance(patch, int) else [int(p) for p in patch]


def patch_grid_problem(backbone: str, image_size: int, patch: list[int] | None) -> str | None:
    """Why ``image_size`` does not suit ``backbone``'s patches, or None when it does (timm would
    silently crop what is not a whole number of patches). The one home of this rule: the config
    check and the model builder both ask it."""
    if not patch or not any(image_size % p for p in patch):
        return None
    side = next(p for p in patch if image_size % p)
    lower, upper = image_size // side * side, (image_size // side + 1) * side
    return (
        f"image size {image_size} px does not fit {backbone}'s {side} px patches; choose a "
        f"multiple of {side}, e.g. {lower or upper} or {upper}"
    )
