"""Schedulers for the prior and the decoder, by name. Few-step multistep solvers are the fast default."""

from __future__ import annotations

from typing import Any

SAMPLERS = ("dpm++", "unipc", "ddim", "ddpm")
DEFAULT_SAMPLER = "dpm++"


def make_scheduler(name: str, base: dict[str, Any], prediction_type: str):
    """A scheduler of kind `name` sharing the noise schedule of `base` (a saved scheduler config)."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    beta_schedule = base.get("beta_schedule")
    if base.get("_class_name") == "UnCLIPScheduler":
        beta_schedule = "squaredcos_cap_v2"  # UnCLIPScheduler's betas_for_alpha_bar
    common = {
        "num_train_timesteps": base.get("num_train_timesteps", 1000),
        "beta_schedule": beta_schedule or "linear",
        "beta_start": base.get("beta_start", 0.0001),
        "beta_end": base.get("beta_end", 0.02),
        "prediction_type": prediction_type,
    }
    if name == "dpm++":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                           timestep_spacing="trailing", lower_order_final=True)  # fmt: skip
    if name == "unipc":
        return UniPCMultistepScheduler(**common, timestep_spacing="trailing")
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing")
    if name == "ddpm":
        return DDPMScheduler(**common, clip_sample=False, variance_type="fixed_small", timestep_spacing="trailing")
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
