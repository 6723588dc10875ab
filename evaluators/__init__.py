"""Evaluation: scorers, prompt sets, generation+scoring harness, statistics, tables and plots.

Never imports ``bench`` or ``methods`` (DESIGN.md section 2): someone who only scores images imports no training code.
"""
from bench_common import ensure_torchvision_importable

ensure_torchvision_importable()
