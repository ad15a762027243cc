"""Diffusion in the graph spectral domain: forward-process schedules and denoiser networks (S-Diff)."""

from .denoiser import DENOISERS, AbstractDenoiser, ConcatDenoiser, Affine, FiLMDenoiser, time_embedding
from .schedule import SCHEDULES, AbstractSchedule, DDPMSchedule, VESchedule, VPSchedule, log_snr

__all__ = [
    "DENOISERS",
    "SCHEDULES",
    "AbstractDenoiser",
    "AbstractSchedule",
    "ConcatDenoiser",
    "DDPMSchedule",
    "Affine",
    "FiLMDenoiser",
    "VESchedule",
    "VPSchedule",
    "log_snr",
    "time_embedding",
]
