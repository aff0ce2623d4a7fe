"""`unclip eval …` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from unclip.cli import app
from unclip.evaluation.cascade import ROWS

runner = CliRunner()


def test_unknown_measure_is_refused_before_loading_a_model(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "speed", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "outpaint" in result.output


def test_eval_outpaint_writes_its_figures(tiny_model: Path, emoji64: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    out.write_text(json.dumps({"clip": {"kept": True}}))
    result = runner.invoke(app, ["eval", "outpaint", "--model", str(tiny_model), "--data", str(emoji64), "--n", "1",
                                 "--out", str(out), "--images", str(tmp_path / "img")])  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert figures["clip"] == {"kept": True}  # merged with what was there
    seams = figures["outpaint"]
    assert seams["canvas"] == [1024, 512] and len(seams["prompts"]) == 1
    assert seams["outpaint"]["pairs"] == seams["naive"]["pairs"] > 0
    assert (tmp_path / "img" / "outpaint_0.png").exists()


def test_eval_cascade_scores_every_row_with_the_judge(
    tiny_model: Path, tiny_judge: Path, emoji64: Path, tmp_path: Path
) -> None:
    out = tmp_path / "figures.json"
    args = ["--model", str(tiny_model), "--data", str(emoji64), "--n", "3", "--judge", str(tiny_judge)]
    result = runner.invoke(app, ["eval", "cascade", *args, "--out", str(out), "--images", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    cascade = json.loads(out.read_text())["cascade"]
    assert tuple(cascade["rows"]) == ROWS
    for row, groups in cascade["rows"].items():
        # a Fréchet distance where the group's kinds have enough other base pairs to compare with (the
        # fixture's holdout split has too few)
        assert "frechet" in groups["seen"]
        for figures in groups.values():
            assert {"concept_top1", "concept_top5", "style", "group"} <= set(figures)
            # the prior's cosine with the real image's embedding, where a row comes from the prior
            assert ("prior_cosine" in figures) == (row in ("canonical", "everyday"))
            assert -1 <= figures.get("prior_cosine", 0) <= 1
    assert cascade["prompts"]["seen"] == cascade["prompts"]["holdout"] == 3
    counts = cascade["prompts"]
    assert counts["non-English seen"] + counts["non-English holdout"] == counts["non-English"]
    assert counts["holdout, no version trained"] <= counts["holdout"]
    assert len(cascade["colour_discs"]) == 12
    assert all(d["mean_abs_error"] >= 0 for d in cascade["colour_discs"].values())
    for name in ("cascade.png", "cascade.md", "prompts.tsv", "cascade.json"):
        assert (tmp_path / "c" / name).exists()
    assert len((tmp_path / "c" / "prompts.tsv").read_text().splitlines()) == 1 + 6
    assert "| real | seen |" in result.output


def test_eval_judge_needs_no_model(tiny_judge: Path, emoji64: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "judge", "--model", str(tmp_path / "missing"), "--data", str(emoji64),
                                 "--judge", str(tiny_judge), "--n", "6"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "frechet_real_vs_real" in result.output


def test_eval_cascade_computes_only_the_rows_asked_for(
    tiny_model: Path, tiny_judge: Path, emoji64: Path, tmp_path: Path
) -> None:
    args = ["--model", str(tiny_model), "--data", str(emoji64), "--n", "2", "--judge", str(tiny_judge)]
    out = tmp_path / "f.json"
    result = runner.invoke(app, ["eval", "cascade", *args, "--rows", "autoencoder", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert list(json.loads(out.read_text())["cascade"]["rows"]) == ["real", "autoencoder"]
    result = runner.invoke(app, ["eval", "cascade", *args, "--rows", "autoencoder,prior"])
    assert result.exit_code == 2 and "prior" in result.output
    result = runner.invoke(app, ["eval", "cascade", *args, "--rows", "canonical@256"])  # gave the real row alone
    assert result.exit_code == 2 and "ask for both" in result.output
    one = [*args[:-4], "--judge", str(tiny_judge), "--n", "1", "--rows", "autoencoder", "--out", str(out)]
    result = runner.invoke(app, ["eval", "cascade", *one, "--guidance", "3", "--prior-guidance", "2.5"])
    assert result.exit_code == 0, result.output  # groups of one prompt have no Fréchet distance: not a crash
    settings = json.loads(out.read_text())["cascade"]["settings"]
    assert settings["guidance"] == 3.0 and settings["prior_guidance"] == 2.5


def test_a_wrong_rows_is_said_before_any_work_and_other_errors_are_their_own(
    tiny_model: Path, tiny_judge: Path, emoji64: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--rows decoder,everyday@256` decoded every image of the decoder row before it said "ask for both", and
    any ValueError of a run (a judge that lacks an emoji) was reported as a bad --rows."""
    from unclip.evaluation import cascade

    calls = []

    def decode(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise ValueError("the judge does not know 3 emoji")

    monkeypatch.setattr(cascade, "decode_embeds", decode)
    args = ["--model", str(tiny_model), "--data", str(emoji64), "--n", "2", "--judge", str(tiny_judge)]
    result = runner.invoke(app, ["eval", "cascade", *args, "--rows", "decoder,everyday@256"])
    assert result.exit_code == 2 and "ask for both" in result.output and not calls
    result = runner.invoke(app, ["eval", "cascade", *args, "--rows", "decoder"])
    assert calls and "judge does not know" in str(result.exception) and "--rows" not in result.output


def test_eval_watermark_reports_strength_and_survival(tiny_model: Path, emoji64: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    args = ["--model", str(tiny_model), "--data", str(emoji64), "--n", "2", "--images", str(tmp_path / "w")]
    result = runner.invoke(app, ["eval", "watermark", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    w = json.loads(out.read_text())["watermark"]
    assert w["images"] == 2 and w["size"] == "256x256"
    assert w["max_change"] <= w["max_change_allowed"] == 2 and w["psnr_min"] >= 42
    assert w["flat_grey_periodic_share"] < 0.25 and w["false_matches"] == "0/4"
    assert set(w["survival"]) >= {"JPEG q75", "resize 0.5x", "crop 10% (centre 90%)"}
    assert len(list((tmp_path / "w").glob("unmarked_*.png"))) == 2


def test_watermark_report_on_drawings() -> None:
    """Flat drawings (what the bundled model makes) keep the mark through JPEG q75, halving and a 10% crop."""
    from PIL import Image, ImageDraw

    from unclip.evaluation.watermark import watermark_report

    images = []
    for k in range(3):
        img = Image.new("RGB", (256, 256), (255, 255, 255))
        d = ImageDraw.Draw(img)
        d.ellipse([30 + 10 * k, 30, 220, 226 - 10 * k], fill=(240, 190 - 40 * k, 40), outline=(40, 30, 30), width=6)
        d.rectangle([90, 100, 160, 140], fill=(60, 40 + 50 * k, 200))
        images.append(img)
    report = watermark_report(images)
    for name in ("PNG as made", "JPEG q75", "resize 0.5x", "crop 10% (centre 90%)"):
        assert report["survival"][name] == 100.0, (name, report)
    assert report["false_matches"] == "0/6" and report["psnr_min"] >= 42


def test_eval_inpaint_judges_real_renders_partly_repainted(
    tiny_model: Path, tiny_judge: Path, emoji64: Path, tmp_path: Path
) -> None:
    import numpy as np
    from PIL import Image

    from unclip.evaluation.inpaint import MASKS, repaint_area, with_hole

    out = tmp_path / "figures.json"
    args = ["--model", str(tiny_model), "--data", str(emoji64), "--n", "2", "--judge", str(tiny_judge)]
    result = runner.invoke(app, ["eval", "inpaint", *args, "--out", str(out), "--images", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())["inpaint"]
    assert tuple(figures["rows"]) == ("real", "masked", "edited")
    assert sum(figures["prompts"].values()) == 4 and figures["render_size"] == 64
    for groups in figures["rows"].values():
        assert set(groups) == {g for g, k in figures["prompts"].items() if k}
        for name, f in groups.items():
            assert f["n"] == figures["prompts"][name] and 0 <= f["concept_top5"] <= 100
    assert all(v > 0 for v in figures["seam_vs_real"].values())
    edits = sorted((tmp_path / "e").glob("edit_*.png"))
    assert len(edits) == 4 and Image.open(edits[0]).size == (256, 256)
    real = Image.new("RGB", (256, 256), (200, 30, 30))
    for kind in MASKS:  # transparent exactly where the model repaints, and nothing of the real pixels there
        hole = np.asarray(with_hole(real, repaint_area(kind)))
        assert ((hole[..., 3] == 0) == repaint_area(kind)).all() and 0 < repaint_area(kind).mean() <= 0.5
        assert (hole[repaint_area(kind)][:, :3] == 255).all()
    assert "| edited | seen |" in result.output


def test_the_contact_sheet_goes_where_it_is_asked_never_over_the_bundled_models(
    tiny_model: Path, emoji64: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """`eval all --images DIR` saved the sheet *at* DIR (a folder: "unknown file extension", and the measures
    after it never ran); `eval sheet --model CANDIDATE` run from a checkout replaced docs/contact-sheet.*."""
    import unclip.evaluation.sheet as sheet

    monkeypatch.setattr(sheet, "sheet_prompts", lambda data, seed=0: [("red apple, noto style", "seen")] * 2)
    checkout = tmp_path / "checkout"
    (checkout / "docs").mkdir(parents=True)
    (checkout / "docs" / "contact-sheet.md").write_text("the bundled model's\n")
    monkeypatch.chdir(checkout)
    base = ["--model", str(tiny_model), "--data", str(emoji64)]
    assert runner.invoke(app, ["eval", "sheet", *base]).exit_code == 0
    assert (checkout / "docs" / "contact-sheet.md").read_text() == "the bundled model's\n"
    assert (checkout / "contact-sheet.png").is_file()
    folder = tmp_path / "images"
    folder.mkdir()
    assert runner.invoke(app, ["eval", "sheet", *base, "--images", str(folder)]).exit_code == 0
    assert (folder / "contact-sheet.png").is_file() and (folder / "contact-sheet.md").is_file()


def test_eval_figures_go_to_a_new_folder_and_n_is_at_least_one(tiny_model: Path, emoji64: Path, tmp_path: Path) -> None:
    """--out in a folder that did not exist failed after the whole evaluation, its figures lost; --n 0 ran the
    default size (160 prompts per kind for the cascade)."""
    out = tmp_path / "new" / "figures.json"
    result = runner.invoke(app, ["eval", "movq", "--model", str(tiny_model), "--data", str(emoji64), "--out", str(out)])
    assert result.exit_code == 0 and "movq" in json.loads(out.read_text()), result.output
    for n in ("0", "-3"):
        refused = runner.invoke(app, ["eval", "cascade", "--model", str(tiny_model), "--n", n, "--rows", "real"])
        assert refused.exit_code == 2 and "--n" in refused.output
