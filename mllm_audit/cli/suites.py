"""`mllm-audit suites`: build suites from datasets held locally, and frame a suite for one model.

Thin wrappers: each option maps to an argument of a function in `mllm_audit.suites.builders` or
`mllm_audit.metrics.disparity`; those modules are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from mllm_audit.cli import options

suites_app = typer.Typer(help="Build suites from local datasets; frame a suite for one model's scan.")
build_app = typer.Typer(help="Build a suite (items.jsonl + suite YAML) from an upstream dataset.")
suites_app.add_typer(build_app, name="build")


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console

    from mllm_audit.util.text import shown

    console = Console()
    console.print(
        f"[bold]{shown(report['name'])}[/]: {report['n_items']} items over {report['n_images']} images "
        f"from {report['n_rows']} rows -> {shown(report['out_dir'])}"
    )
    for reason, n in report["skipped"].items():
        examples = "; ".join(report["examples"].get(reason, [])[:3])
        console.print(f"  skipped {n} ({shown(reason)}); e.g. " + shown(examples))
    if report.get("n_missing"):
        console.print(
            f"  {report['n_missing']} of {report['n_urls']} images missing: listed in "
            f"{Path(report['out_dir']) / 'missing_images.tsv'} (fetch them and build again)",
            markup=False,
        )


def _build(build: Any, *args: Any, **kwargs: Any) -> None:
    """Run a builder and print its report; when it stops for missing images, print what it read first."""
    from rich.console import Console

    from mllm_audit.suites.builders.common import ImagesMissing

    try:
        report = build(*args, **kwargs).to_dict()
    except ImagesMissing as e:
        r = e.report.to_dict()
        Console().print(f"{r['name']}: {r['n_rows']} rows read, {r['n_urls']} distinct image URLs", markup=False)
        for reason, n in r["skipped"].items():
            Console().print(f"  skipped {n} ({reason}); e.g. " + "; ".join(r["examples"][reason][:3]), markup=False)
        raise
    _print_report(report)


_IMAGES_HELP = (
    "Folder holding the images under the `file` names of OUTPUT/images.tsv. Without it (or with none "
    "of them there) the build writes OUTPUT/images.tsv and stops with exit 2."
)


@build_app.command("vlstereoset")
def build_vlstereoset_cmd(
    csv: Path = typer.Option(
        ...,
        "--csv",
        help="VLStereoSet.csv as published (bias_type, target, context, stereotype, "
        "anti-stereotype, unrelated, label, Imaeg URL).",
    ),
    images: Optional[Path] = typer.Option(None, "--images", help=_IMAGES_HELP),  # noqa: UP045 - typer
    output: Optional[Path] = typer.Option(  # noqa: UP045 - typer
        None, "--output", help="Output suite folder (items.jsonl + vlstereoset.yaml); required."),
    out_alias: Optional[Path] = options.output_alias(),  # noqa: UP045 - typer
    name: str = typer.Option("vlstereoset", "--name", help="Suite name."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier build at --output."),
) -> None:
    """Image captioning suite: stereotype vs anti-stereotype caption."""
    from mllm_audit.suites.builders.vlstereoset import build_vlstereoset

    output = options.pick_output(output, out_alias, "suites build vlstereoset")
    _build(build_vlstereoset, csv, images, output, name=name, overwrite=overwrite)


@build_app.command("pata")
def build_pata_cmd(
    files: Path = typer.Option(..., "--files", help="pata_fairness.files.lst (scene_race_gender_age|URL)."),
    captions: Path = typer.Option(
        ..., "--captions", help="pata_fairness.captions.json: a list of {short, pos: {races, gender, age}, neg}."
    ),
    images: Optional[Path] = typer.Option(None, "--images", help=_IMAGES_HELP),  # noqa: UP045 - typer
    output: Optional[Path] = typer.Option(  # noqa: UP045 - typer
        None, "--output", help="Output suite folder (items.jsonl + pata.yaml); required."),
    out_alias: Optional[Path] = options.output_alias(),  # noqa: UP045 - typer
    name: str = typer.Option("pata", "--name", help="Suite name."),
    protocol: str = typer.Option(
        "pairs",
        "--protocol",
        help="pairs: per image and attribute, each negative caption with a seeded positive one (same "
        "pairs for every image of a scene); paper: one item per image, a random attribute then a random "
        "negative and positive sentence (the debias-editing paper's construction).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the caption choices."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier build at --output."),
) -> None:
    """Image captioning suite: negative vs positive caption per protected attribute."""
    from mllm_audit.suites.builders.pata import build_pata

    output = options.pick_output(output, out_alias, "suites build pata")
    _build(build_pata, files, captions, images, output, name=name, protocol=protocol, seed=seed,
           overwrite=overwrite)


@build_app.command("pairs")
def build_pairs_cmd(
    src: Path = typer.Option(..., "--src", help="PAIRS folder (questions.jsonl + images/)."),
    output: Optional[Path] = typer.Option(  # noqa: UP045 - typer
        None, "--output", help="Suite folder to write (may equal --src if that is an earlier build); required."
    ),
    out_alias: Optional[Path] = options.output_alias(),  # noqa: UP045 - typer
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier build at --output."),
) -> None:
    """(Re)generate the pairs-vqa suite folder from PAIRS."""
    from mllm_audit.suites.builders.pairs import build_pairs

    output = options.pick_output(output, out_alias, "suites build pairs")
    _print_report(build_pairs(src, output, overwrite).to_dict())


@suites_app.command("frame")
def frame_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder of a scan (samples.jsonl)."),
    suite: str = typer.Option(..., "--suite", help="The suite that run scanned (name, .yaml or .jsonl)."),
    output: Optional[Path] = typer.Option(  # noqa: UP045 - typer
        None, "--output", help="Framed items file (.jsonl; required); a .yaml beside it is written too."
    ),
    out_alias: Optional[Path] = options.output_alias(),  # noqa: UP045 - typer
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Images root, if not the suite's."),
    allow_outside_paths: bool = typer.Option(False, "--allow-outside-paths",
                                             help="Allow the suite to name files outside its folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier framing at --output."),
) -> None:
    """Per-model framing: y_more := the answer the model rates higher on each image (edit target: y_less)."""
    from rich.console import Console

    from mllm_audit.suites.frame import frame_run

    output = options.pick_output(output, out_alias, "suites frame")
    r = frame_run(run_dir, suite, output, data_dir=data_dir, allow_outside_paths=allow_outside_paths,
                  overwrite=overwrite)
    from mllm_audit.util.text import shown

    Console().print(shown(
        f"{r['items']} items framed ({r['swapped']} swapped, {r['without_sample']} without a sample) -> "
        f"{r['out']}; use --suite {r['suite_yaml']}"
    ))


@suites_app.command("export")
def export_cmd(
    output: Path = typer.Argument(..., help="Task folder to write (new, or an empty folder)."),
    suite: str = typer.Option("toy", "--suite", "-s", help="Registered suite, suite .yaml, or items .jsonl."),
    format: str = typer.Option("lmms-eval", "--format", help="lmms-eval or lm-eval task files."),
    split: str | None = typer.Option(None, "--split", help="Only this split's items (default: all, as scan)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Images root, if not the suite's."),
    allow_outside_paths: bool = typer.Option(False, "--allow-outside-paths",
                                             help="Allow the suite to name files outside its folder."),
) -> None:
    """Write the suite as harness task files: the same % biased as `scan`, from lmms-eval or lm-eval."""
    from rich.console import Console

    from mllm_audit.api import export_suite
    from mllm_audit.util.text import shown

    r = export_suite(output, suite, format, split, data_dir, allow_outside_paths)
    Console().print(shown(f"{r['n_items']} items -> {r['out']} ({r['format']} task {r['task']}); run with "
                          f"--include_path {r['out']} --tasks {r['task']}"))


def register(app: typer.Typer) -> None:
    """Add the `suites` group."""
    app.add_typer(suites_app, name="suites")
