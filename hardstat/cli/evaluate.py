"""``hardstat eval``: downstream evaluation of a run's checkpointed encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hardstat.cli.errors import note, reports_errors
from hardstat.cli.options import Format, FormatOption, QuietOption


@reports_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory (holds manifest.json).")],
    linear: Annotated[
        bool,
        typer.Option(
            "--linear/--no-linear",
            help="Train a linear probe on frozen "
            "backbone features and report top-1 on the held-out split.",
        ),
    ] = True,
    knn: Annotated[bool, typer.Option("--knn/--no-knn", help="Also run the kNN monitor.")] = False,
    epochs: Annotated[int, typer.Option(help="Linear-probe epochs over the features.")] = 100,
    lr: Annotated[float, typer.Option(help="Linear-probe learning rate.")] = 0.1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    dataset: Annotated[
        str | None,
        typer.Option(
            metavar="SPEC",
            help="Dataset spec if it moved since training (default: the run's own).",
        ),
    ] = None,
    fmt: FormatOption = Format.table,
    json_out: Annotated[bool, typer.Option("--json", hidden=True)] = False,
    quiet: QuietOption = False,
) -> None:
    """Evaluate a run's encoder and append the results to its evals table.

    Progress (features, then the probe's epochs) goes to stderr, the results to stdout: one
    line per evaluation, or JSON with `-f json`.

    Example: `hardstat eval runs/my-run --linear`
    """
    from hardstat import preflight, runs
    from hardstat.errors import ConfigError

    if not (linear or knn):
        raise ConfigError("nothing to evaluate: use --linear and/or --knn")
    if epochs < 1 or lr <= 0:
        raise ConfigError("--epochs must be >= 1 and --lr > 0")
    # cheap checks before torch is imported: a wrong path, dataset or device fails at once
    manifest = runs.read_manifest(run)
    runs.check_evaluable(run)
    if dataset is not None:
        runs.check_text(dataset, "--dataset")
    spec = dataset or (manifest.get("dataset") or {}).get("spec")
    if isinstance(spec, str):
        download = bool(manifest["config"].get("data", {}).get("download"))
        preflight.check_dataset(spec, download=download)
    preflight.check_device(device)
    from hardstat.train.posthoc import evaluate_run

    results = evaluate_run(
        run,
        linear=linear,
        knn=knn,
        linear_epochs=epochs,
        linear_lr=lr,
        device=device,
        dataset_spec=dataset,
        progress=None if quiet else note,
    )
    if fmt is Format.json or json_out:
        typer.echo(json.dumps([r.__dict__ for r in results], indent=2))
        return
    for r in results:
        top5 = "n/a" if r.top5 is None else f"{r.top5:.4f}"
        typer.echo(f"{r.kind}\tstep {r.step}\ttop1 {r.top1:.4f}\ttop5 {top5}")
