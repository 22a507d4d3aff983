"""Measurement tools outside the pipeline: the benchmark, the GPU check and their helpers. They
import the pipeline's package; the package never imports them.
"""
