"""DinoBloom, the hematology foundation model, as backbone names: no torch, no timm.

DinoBloom (Koch et al., MICCAI 2024, arXiv:2404.05022) is a family of DINOv2 vision
transformers trained self-supervised on white-blood-cell images. Its weights are published on
Zenodo (record 10908163) as ``DinoBloom-{S,B,L,G}.pth``: DINOv2 repository training checkpoints
(``teacher`` -> ``backbone.*`` plus the DINO and iBOT heads), patch 14, trained at 224 px. In
this project a variant is a backbone name (``dinobloom_s`` ...) that builds timm's DINOv2 ViT of
the same size; ``train/dinobloom.py`` converts the checkpoint into that model's weights once.

The config check and the rule files need these names at every Snakemake start, so they live
apart from the conversion (which imports torch).
"""

from __future__ import annotations

from dataclasses import dataclass

ZENODO_RECORD = "10908163"
# The size DinoBloom was trained at (16 x 16 patches of 14 px) and its evaluation code feeds
# (``dinov2/eval/models/return_model.get_transforms``: Resize(224), ImageNet mean and std).
TRAINED_SIZE = 224


@dataclass(frozen=True)
class DinoBloomVariant:
    """One published DinoBloom model and the timm architecture that holds its weights."""

    backbone: str  # the name in config.yaml's experiments[].backbones
    file: str  # the file name in the Zenodo record
    architecture: str  # timm's DINOv2 ViT of the same size
    embed_dim: int
    # sha256 of the Zenodo file where one is published by someone who checked it; None: Zenodo
    # lists only md5, so the first download's sha256 is recorded (weights/<backbone>.json) and
    # every later run is checked against that record.
    sha256: str | None = None
    sha256_source: str | None = None

    @property
    def url(self) -> str:
        return f"https://zenodo.org/records/{ZENODO_RECORD}/files/{self.file}?download=1"


VARIANTS: dict[str, DinoBloomVariant] = {
    v.backbone: v
    for v in (
        DinoBloomVariant(
            "dinobloom_s", "DinoBloom-S.pth", "vit_small_patch14_dinov2", 384,
            sha256="c2f7990b003e89bcece80e379fb8fe0ba2ec392ce19b286e8a294abd99568e44",
            sha256_source="KatherLab/STAMP, src/stamp/preprocessing/extractor/dinobloom.py "
            "(checks its download of the same Zenodo file against it)",
        ),
        DinoBloomVariant("dinobloom_b", "DinoBloom-B.pth", "vit_base_patch14_dinov2", 768),
        DinoBloomVariant("dinobloom_l", "DinoBloom-L.pth", "vit_large_patch14_dinov2", 1024),
        DinoBloomVariant("dinobloom_g", "DinoBloom-G.pth", "vit_giant_patch14_dinov2", 1536),
    )
}


def is_dinobloom(backbone: str) -> bool:
    return backbone in VARIANTS


def architecture(backbone: str) -> str:
    """The timm model that ``backbone`` builds: its DINOv2 ViT for a DinoBloom name, else the
    name itself."""
    variant = VARIANTS.get(backbone)
    return variant.architecture if variant else backbone
