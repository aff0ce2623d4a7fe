"""`unclip verify IMAGE` and `unclip policy check TEXT`: provenance and content policy from the shell."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from unclip.cli import app

policy_app = typer.Typer(help="Content policy: check prompts against the policy file.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@app.command("verify")
def verify_cmd(
    image: Path = typer.Argument(
        ..., exists=True, dir_okay=False, readable=True, help="Image file to check."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON."),
    data_dir: Path = typer.Option(
        Path("var"),
        "--data-dir",
        envvar="UNCLIP_DATA_DIR",
        help="The server's data folder: its provenance.key checks the signed metadata (UNCLIP_PROVENANCE_KEY wins).",
    ),
) -> None:
    """Say whether IMAGE came from this server (signed PNG metadata and/or the invisible watermark).

    Exit code 0 when it did, 1 when it did not, 2 when the file is not an image.
    """
    from PIL import UnidentifiedImageError

    from unclip.safety.provenance import use_key, verify

    key_file = data_dir / "provenance.key"
    if not os.environ.get("UNCLIP_PROVENANCE_KEY") and key_file.is_file():
        use_key(key_file.read_bytes().strip())
    try:
        result = verify(image.read_bytes())
    except UnidentifiedImageError as exc:
        typer.echo(f"{image}: not an image file (PNG, JPEG, WebP, GIF, BMP or TIFF expected)", err=True)
        raise typer.Exit(2) from exc
    except ValueError as exc:  # too large to verify
        typer.echo(f"{image}: {exc}", err=True)
        raise typer.Exit(2) from exc
    except OSError as exc:  # truncated or corrupt image data
        typer.echo(f"{image}: the image data could not be decoded (truncated or corrupt file)", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        verdict = "from this server" if result.from_unclip else "NOT from this server (no valid mark found)"
        typer.echo(f"{image}: {verdict}")
        typer.echo(
            f"  watermark: {result.watermark or 'not found'}"
            + (f" ({result.watermark_found_by})" if result.watermark else "")
        )
        if result.metadata_valid:
            typer.echo("  metadata:  valid signature")
        elif result.metadata:
            typer.echo("  metadata:  present but NOT signed by this server (its values cannot be trusted)")
        else:
            typer.echo("  metadata:  none")
        for key in ("model", "seed", "created", "request_id"):
            if key in result.metadata:
                label = key if result.metadata_valid else f"{key} (unverified)"
                typer.echo(f"    {label}: {result.metadata[key]}")
        if result.signature:
            typer.echo("  visible colour signature: present")
    raise typer.Exit(0 if result.from_unclip else 1)


@policy_app.command("check")
def policy_check(
    text: list[str] = typer.Argument(..., help="Prompt(s) to check."),
    policy_file: Path | None = typer.Option(None, "--policy", help="Policy file (default: the bundled one)."),
    as_json: bool = typer.Option(False, "--json", help="Print OpenAI's moderation response shape."),
) -> None:
    """Check prompts against the content policy. Exit code 1 when any prompt is flagged."""
    from unclip.safety.moderation import moderation_response
    from unclip.safety.policy import ContentPolicy

    policy = ContentPolicy.load(policy_file)
    flagged = False
    if as_json:
        response = moderation_response(list(text), policy)
        flagged = any(r["flagged"] for r in response["results"])
        typer.echo(json.dumps(response, indent=2, ensure_ascii=False))
    else:
        for t in text:
            d = policy.check(t)
            flagged = flagged or d.flagged
            if d.flagged:
                typer.echo(f"BLOCK  {t!r}: {d.category} ({d.reason}; {'; '.join(d.matches)})")
            else:
                typer.echo(f"allow  {t!r}" + (f" ({d.reason})" if d.reason else ""))
    raise typer.Exit(1 if flagged else 0)


DATA = Path("tests/data")
# safety_prompts_fresh.csv is kept out: written apart from the others, it stays an independent check
TRAINING_SETS = (
    "safety_prompts",
    "safety_prompts_extra",
    "policy_set",
    "policy_train",
    "policy_train_2",
    "policy_train_3",
    "policy_train_4",
    "policy_train_5",
    "policy_train_6",
)


@policy_app.command("train")
def policy_train(
    sets: list[Path] = typer.Argument(
        None,
        help="Labelled prompt CSVs (text,label,category[,variant,lang,split]); rows of split `test` are never "
        "trained on. Default: the training sets in tests/data.",
    ),
    out: Path = typer.Option(
        None, "--out", help="Where to write the weights (default: the package's prompt_classifier.npz)."
    ),
    policy_file: Path | None = typer.Option(None, "--policy", help="Policy file (rules and exemplars)."),
    cache: Path = typer.Option(
        Path("cache/npm"), "--cache", help="npm cache of `unclip data build` (emojibase captions)."
    ),
    max_fpr: float = typer.Option(0.03, "--max-fpr", help="False-positive rate the threshold is chosen for."),
    hidden: int = typer.Option(512, "--hidden", help="Hidden ReLU units per network (0: a linear classifier)."),
    members: int = typer.Option(5, "--members", help="Networks averaged (different seeds)."),
    l2: float = typer.Option(1e-4, "--l2", help="Weight decay."),
    ngram_share: float = typer.Option(
        0.65,
        "--ngram-share",
        help="Share of the character n-gram reader's logits beside the network's (0: none).",
    ),
    encoder_epochs: int = typer.Option(
        0, "--encoder-epochs", help="Fine-tune the sentence encoder's upper layers for this many epochs first (0: no)."
    ),
    encoder_minutes: float = typer.Option(30.0, "--encoder-minutes", help="Time limit of the encoder's tuning."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Fit the content policy's semantic classifier on the labelled prompt sets (about five minutes on 2 cores)."""
    from unclip.data.sources import EMOJIBASE, fetch
    from unclip.safety.classifier import default_weights_path
    from unclip.safety.policy import ContentPolicy
    from unclip.training.policy import MLPSettings, NgramSettings, train_policy_classifier
    from unclip.training.policy_encoder import EncoderSettings

    if not sets:
        sets = [DATA / f"{name}.csv" for name in TRAINING_SETS]
    missing = [str(p) for p in sets if not p.is_file()]
    if missing:
        raise typer.BadParameter(f"no such prompt set: {', '.join(missing)}")
    report = train_policy_classifier(
        sets,
        out or default_weights_path(),
        ContentPolicy.load(policy_file),
        emojibase_dir=fetch(EMOJIBASE, cache),
        settings=MLPSettings(hidden=hidden, members=members, l2=l2) if hidden else None,
        l2=l2,
        ngram=NgramSettings(share=ngram_share) if ngram_share > 0 else None,
        max_fpr=max_fpr,
        seed=seed,
        encoder=EncoderSettings(epochs=encoder_epochs, max_minutes=encoder_minutes) if encoder_epochs else None,
        log=lambda line: typer.echo(line, err=True),
    )
    typer.echo(json.dumps(report, indent=2))
