"""Training stage: timm models and fine-tuning strategies, loader, pretrained weights, the loop."""
