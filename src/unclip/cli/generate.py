"""`unclip generate`: images from a text prompt. Options, checks and output are shared, in `unclip.cli.common`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unclip.cli import app
from unclip.cli.common import (
    Grid,
    Guidance,
    Model,
    N,
    Out,
    Quiet,
    Sampler,
    Seed,
    Size,
    Steps,
    Threads,
    check_common,
    check_prompts,
    engine_for,
    errors,
    prepare_out,
    progress_bar,
    save_outputs,
)


@app.command("generate")
def generate_cmd(
    prompt: Annotated[str, typer.Argument(help="What to draw, e.g. 'grinning face, noto style'.")],
    n: N = 4,
    size: Size = 256,
    seed: Seed = None,
    guidance: Guidance = None,
    steps: Steps = None,
    negative_prompt: Annotated[
        str | None, typer.Option("--negative-prompt", help="What to steer away from.")
    ] = None,
    sampler: Sampler = None,
    model: Model = None,
    out: Out = Path("outputs"),
    grid: Grid = False,
    quiet: Quiet = False,
    threads: Threads = None,
) -> None:
    """Generate images from a text prompt (prior → decoder → upsamplers)."""
    with errors():
        from unclip.engine.engine import check_negative_prompt

        check_common(n, size, steps, guidance, sampler)
        check_negative_prompt(negative_prompt, guidance)  # before the model loads
        check_prompts([prompt], negative_prompt)
        prepare_out(out)
        engine = engine_for(model, threads, quiet)
        with progress_bar("generate", quiet) as cb:
            images = engine.generate(
                prompt,
                n=n,
                size=size,
                seed=seed,
                guidance=guidance,
                steps=steps,
                negative_prompt=negative_prompt,
                sampler=sampler,
                progress=cb,
            )
        save_outputs(images, out, "generate", prompt, {"prior_steps": engine.prior_steps}, grid)
