"""`mllm-audit suites`: build suites from datasets held locally, and frame a suite for one model.

Thin wrappers: each option maps to an argument of a function in `mllm_audit.builders` or
`mllm_audit.disparity`; those modules are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

suites_app = typer.Typer(help="Build suites from local datasets; frame a suite for one model's scan.")
build_app = typer.Typer(help="Build a suite (items.jsonl + suite YAML) from an upstream dataset.")
suites_app.add_typer(build_app, name="build")


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console

    from ..text import shown

    console = Console()
    console.print(
        f"[bold]{shown(report['name'])}[/]: {report['n_items']} items over {report['n_images']} images "
        f"from {report['n_rows']} rows -> {shown(report['out_dir'])}"
    )
    for reason, n in report["skipped"].items():
        examples = "; ".join(report["examples"].get(reason, [])[:3])
        console.print(f"  skipped {n} ({shown(reason)}); e.g. " + shown(examples))


@build_app.command("vlstereoset")
def build_vlstereoset_cmd(
    csv: Path = typer.Option(
        ...,
        "--csv",
        help="VLStereoSet CSV (bias_type, target, context, stereotype, "
        "anti-stereotype, unrelated, label, image URL).",
    ),
    images: Path = typer.Option(..., "--images", help="Folder holding the images, named as in the URLs."),
    out: Path = typer.Option(..., "--out", help="Output suite folder (items.jsonl + vlstereoset.yaml)."),
    name: str = typer.Option("vlstereoset", "--name", help="Suite name."),
) -> None:
    """Image captioning suite: stereotype vs anti-stereotype caption."""
    from ..builders import build_vlstereoset

    _print_report(build_vlstereoset(csv, images, out, name=name).to_dict())


@build_app.command("pata")
def build_pata_cmd(
    files: Path = typer.Option(..., "--files", help="pata_fairness.files.lst (scene_race_gender_age|URL)."),
    captions: Path = typer.Option(
        ..., "--captions", help="Captions JSON: scene -> attribute -> {positive: [...], negative: [...]}."
    ),
    images: Path = typer.Option(..., "--images", help="Folder holding the images, named as in the URLs."),
    out: Path = typer.Option(..., "--out", help="Output suite folder (items.jsonl + pata.yaml)."),
    name: str = typer.Option("pata", "--name", help="Suite name."),
) -> None:
    """Image captioning suite: negative vs positive caption per protected attribute."""
    from ..builders import build_pata

    _print_report(build_pata(files, captions, images, out, name=name).to_dict())


@build_app.command("pairs")
def build_pairs_cmd(
    src: Path = typer.Option(..., "--src", help="PAIRS folder (questions.jsonl + images/)."),
    out: Path = typer.Option(..., "--out", help="Suite folder to write (may equal --src)."),
) -> None:
    """(Re)generate the pairs-vqa suite folder from PAIRS."""
    from ..builders import build_pairs

    _print_report(build_pairs(src, out).to_dict())


@suites_app.command("frame")
def frame_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder of a scan (samples.jsonl)."),
    suite: str = typer.Option(..., "--suite", help="The suite that run scanned (name, .yaml or .jsonl)."),
    out: Path = typer.Option(
        ..., "--out", help="Framed items file (.jsonl); a .yaml beside it is written too."
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Images root, if not the suite's."),
    allow_outside_paths: bool = typer.Option(False, "--allow-outside-paths",
                                             help="Allow the suite to name files outside its folder."),
) -> None:
    """Per-model framing: y_more := the answer the model rates higher on each image (edit target: y_less)."""
    from rich.console import Console

    from ..disparity import frame_run

    r = frame_run(run_dir, suite, out, data_dir=data_dir, allow_outside_paths=allow_outside_paths)
    from ..text import shown

    Console().print(shown(
        f"{r['items']} items framed ({r['swapped']} swapped, {r['without_sample']} without a sample) -> "
        f"{r['out']}; use --suite {r['suite_yaml']}"
    ))


def register(app: typer.Typer) -> None:
    """Add the `suites` group."""
    app.add_typer(suites_app, name="suites")
