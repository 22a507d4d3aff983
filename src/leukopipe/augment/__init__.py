"""Augmentation stage: class-balanced plan, the nine transforms, uint8 pixel stores."""
