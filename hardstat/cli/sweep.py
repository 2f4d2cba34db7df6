"""``hardstat sweep``: a band ablation (bands x seeds) as one resumable command."""

from __future__ import annotations

import shlex
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from hardstat.cli.errors import reports_errors
from hardstat.cli.options import (
    CONFIG,
    DEFAULT_PRESET,
    ConfigOption,
    DatasetOption,
    OutAlias,
    PresetOption,
    SetOption,
    either,
    in_flag_words,
    overrides,
    preset_values,
)

_SPEC = "Sweep"
_RUN = "Execution"
_EVAL = "Evaluation after training"


class Launcher(StrEnum):
    local = "local"
    slurm = "slurm"


class Eval(StrEnum):
    linear = "linear"
    none = "none"


@reports_errors
def sweep(
    sweep_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Sweep directory: holds sweep.json and one run directory per (band, seed).",
            show_default=False,
            rich_help_panel=_SPEC,
        ),
    ] = None,
    out: OutAlias = None,
    bands: Annotated[
        str | None,
        typer.Option(
            help="Bands to compare, comma-separated; join the ranges of a union band with '+', "
            "e.g. 0-100,0-5,5-100,0.1-100,0-5+50-55,random:5,random=5-100 (random=BAND: as "
            "many negatives as BAND keeps, at random).",
            rich_help_panel=_SPEC,
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(help="Seeds, comma-separated (default 0).", rich_help_panel=_SPEC),
    ] = None,
    preset: PresetOption = None,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    set_: SetOption = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help=f"Passes over the training set. Default: the preset's "
            f"({preset_values('optim.epochs')}).",
            rich_help_panel=CONFIG,
        ),
    ] = None,
    subset: Annotated[
        int | None,
        typer.Option(help="Train on a seeded subset of this many images.", rich_help_panel=CONFIG),
    ] = None,
    eval_: Annotated[
        Eval | None,
        typer.Option(
            "--eval",
            help="linear: after each run trains, run its linear probe (as `hardstat eval RUN "
            "--linear`), so the sweep yields the primary metric; finished probes are skipped "
            "when the sweep is repeated. none: no probe. Default: what the sweep recorded "
            "(none for a new sweep). The kNN monitor (eval.knn_every) runs during training "
            "either way.",
            show_default=False,
            rich_help_panel=_EVAL,
        ),
    ] = None,
    linear_epochs: Annotated[
        int | None,
        typer.Option(
            help="Linear-probe epochs over the features (with --eval linear; default 100).",
            show_default=False,
            rich_help_panel=_EVAL,
        ),
    ] = None,
    linear_lr: Annotated[
        float | None,
        typer.Option(
            help="Linear-probe learning rate (with --eval linear; default 0.1).",
            show_default=False,
            rich_help_panel=_EVAL,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the commands the sweep would run now, one per line; write nothing.",
            rich_help_panel=_RUN,
        ),
    ] = False,
    launcher: Annotated[
        Launcher,
        typer.Option(
            help="local: train the runs here, one after the other. slurm: write "
            "DIR/sweep.sbatch, a job array with one task per run, and run nothing.",
            rich_help_panel=_RUN,
        ),
    ] = Launcher.local,
    index: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Train only run I of the recorded plan (what a Slurm array task does); "
            "needs no other options.",
            rich_help_panel=_RUN,
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars.", rich_help_panel=_RUN)
    ] = False,
) -> None:
    """Train a band ablation: every band with every seed, as runs of one directory.

    The plan (bands, seeds, each run's resolved config and exact `hardstat train` command)
    goes to DIR/sweep.json; run NAME = BAND-sSEED goes to DIR/NAME. The command is safe to
    repeat: finished runs are skipped, interrupted ones resumed from their checkpoint, run
    directories that died before their first checkpoint moved to DIR/.failed/ and restarted.
    With --eval linear each finished run then gets its linear probe (as `hardstat eval RUN
    --linear`); finished probes are skipped and interrupted ones redone. Ctrl-C stops the
    current run (or probe) cleanly; run the same command (or `hardstat sweep --sweep-dir DIR`)
    to continue. The sweep directory is printed on stdout, a summary table on stderr.

    Examples:

    * `hardstat sweep --bands 0-100,0-5,random:5 --seeds 0,1 --epochs 1 --sweep-dir
    sweeps/tiny`

    * `hardstat sweep --bands 0-100,5-100,random=5-100 --seeds 0,1,2 --eval linear --sweep-dir
    sweeps/easy`

    * `hardstat sweep --sweep-dir sweeps/tiny --eval linear` (add the linear probe to a sweep)

    * `hardstat sweep --preset cifar10 --bands 0-100,0-5,5-100 --sweep-dir sweeps/c10 --dry-run`

    * `hardstat sweep --preset cifar10 --bands 0-100,0-5 --sweep-dir sweeps/c10 --launcher
    slurm`

    * `hardstat sweep --sweep-dir sweeps/c10 --index 3`
    """
    from hardstat import runs
    from hardstat import sweep as sw

    out = either(sweep_dir, out, "--sweep-dir")
    if out is None:
        raise typer.BadParameter("give the sweep directory", param_hint="'--sweep-dir'")
    for what, value in (("--sweep-dir", out), ("--config", config), ("--dataset", dataset)):
        if value is not None:
            runs.check_text(value, what)
    flags = {
        "data.dataset": ("--dataset", dataset),
        "optim.epochs": ("--epochs", epochs),
        "data.subset": ("--subset", subset),
    }
    changes = overrides(flags, set_)
    if (linear_epochs is not None or linear_lr is not None) and eval_ is not Eval.linear:
        raise typer.BadParameter(
            "--linear-epochs and --linear-lr set the probe of --eval linear; add --eval linear",
            param_hint="'--eval'",
        )
    if index is not None and launcher is Launcher.slurm:
        raise typer.BadParameter(
            "--index trains one run here; it does not combine with --launcher slurm",
            param_hint="'--index'",
        )
    if bands is None:
        if changes or seeds is not None or preset is not None or config is not None:
            raise typer.BadParameter(
                "give --bands with the other sweep options, or only --sweep-dir to continue the "
                "sweep recorded there",
                param_hint="'--bands'",
            )
        if not (out / sw.SWEEP_FILE).is_file():
            raise typer.BadParameter(
                f"no sweep recorded in {out}; plan one with --bands (and --seeds)",
                param_hint="'--bands'",
            )
        spec = None
    else:
        with in_flag_words(flags, set_):
            spec = sw.SweepSpec.build(
                bands,
                seeds if seeds is not None else "0",
                preset=(preset or DEFAULT_PRESET).value,
                config_file=config,
                overrides=changes,
            )
    plan = sw.open_sweep(out, spec)
    if eval_ is Eval.none:
        plan = plan.with_probe(None)
    elif eval_ is Eval.linear:
        probe = sw.LinearProbe(
            epochs=100 if linear_epochs is None else linear_epochs,
            lr=0.1 if linear_lr is None else linear_lr,
        )
        plan = plan.with_probe(probe)
    indices = None if index is None else [index]
    if index is not None:
        plan.check_index(index)

    if dry_run:
        for line in sw.dry_run_lines(plan, indices):
            typer.echo(line)
        return
    if launcher is Launcher.slurm:
        script = sw.write_slurm(plan)
        typer.echo(
            f"planned {len(plan.runs)} runs in {plan.manifest_path}; submit the job array with:",
            err=True,
        )
        typer.echo(shlex.join(["sbatch", str(script)]))
        return

    with _sweep_lock(plan.out, shared=index is not None):
        report = sw.execute(plan, indices, progress=not quiet)
    if not runs.main_process():  # under torchrun, process 0 reports
        raise typer.Exit(130 if report.interrupted else 0)
    typer.echo(sw.format_summary(report.outcomes, probe=plan.probe is not None), err=True)
    if report.interrupted:
        stopped = next(o for o in report.outcomes if "stopped" in (o.action, o.probe))
        during = "the linear probe of run" if stopped.probe == "stopped" else "run"
        again = shlex.join(
            ["hardstat", "sweep", "--sweep-dir", str(plan.out)]
            + (["--index", str(index)] if index is not None else [])
        )
        typer.echo(
            f"sweep stopped during {during} {stopped.run.name}; continue with the same command "
            f"(or: {again})",
            err=True,
        )
        typer.echo(str(plan.out))
        raise typer.Exit(130)
    typer.echo(str(plan.out))


def _sweep_lock(out: Path, *, shared: bool) -> Any:
    """The sweep directory's lock: one whole-sweep process at a time (exclusive), or any number
    of Slurm array tasks (``--index``, shared); under torchrun process 0 holds it."""
    import contextlib

    from hardstat import runs

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise runs.write_failed(out, e, "choose another --sweep-dir") from e
    if not runs.main_process():
        return contextlib.nullcontext()
    return runs.RunLock(out, what="sweep").acquire(shared=shared)
