"""``hardstat train``: train (or resume) an instrumented MoCo v2 run."""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hardstat.cli.errors import note, reports_errors, result_line
from hardstat.cli.options import (
    DEFAULT_PRESET,
    Backbone,
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
from hardstat.cli.options import parse_override as parse_override

_DATA = "Data"
_MODEL = "Model and loss"
_OPTIM = "Optimization"
_LOG = "Rank logging and evaluation"
_RUN = "Run"


def default_run_name(preset: str, band: str, seed: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9.=+-]+", "", band.replace(",", "+").replace(":", ""))
    return f"{preset}-band{slug}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def _default(key: str) -> str:
    return f"Default: the preset's ({preset_values(key)})."


@reports_errors
def train(
    preset: PresetOption = None,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    set_: SetOption = None,
    download: Annotated[
        bool,
        typer.Option(
            help="Let torchvision download CIFAR (needs internet).", rich_help_panel=_DATA
        ),
    ] = False,
    subset: Annotated[
        int | None,
        typer.Option(
            help="Train on a seeded random subset of this many images "
            "(sample_ids keep their original values).",
            rich_help_panel=_DATA,
        ),
    ] = None,
    band: Annotated[
        str | None,
        typer.Option(
            help="Negatives the loss uses, by per-query difficulty rank in "
            "percent of the queue: 0-100 (all, the default), 0-5 (hardest 5%), 5-100, "
            "0.1-100, unions 0-5,50-55, random:5 (5% at random), or random=5-100 (as many "
            "at random as 5-100 keeps).",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    backbone: Annotated[
        Backbone | None,
        typer.Option(
            help=f"Encoder network. {_default('model.backbone')}",
            show_default=False,
            rich_help_panel=_MODEL,
        ),
    ] = None,
    queue_size: Annotated[
        int | None,
        typer.Option(
            "--queue-size",
            "-K",
            help=f"K, negatives in the queue. {_default('model.queue_size')}",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(help="T, softmax temperature (default 0.1).", rich_help_panel=_MODEL),
    ] = None,
    momentum: Annotated[
        float | None,
        typer.Option(help="m, key-encoder momentum (default 0.99).", rich_help_panel=_MODEL),
    ] = None,
    symmetric: Annotated[
        bool | None,
        typer.Option(
            "--symmetric/--asymmetric",
            help="Symmetrized loss (both views as queries; the log records the first "
            "direction). Default: asymmetric.",
            show_default=False,
            rich_help_panel=_MODEL,
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help=f"Passes over the training set. {_default('optim.epochs')}",
            rich_help_panel=_OPTIM,
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            "-B",
            help=f"Images per step (the global batch under torchrun). "
            f"{_default('optim.batch_size')}",
            rich_help_panel=_OPTIM,
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="Learning rate (default 0.06 x batch / 512).", rich_help_panel=_OPTIM),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Seed of the initial weights, data order, augmentations and logged queries "
            "(default 0).",
            rich_help_panel=_OPTIM,
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="auto (the default), cpu, cuda, cuda:N.", rich_help_panel=_OPTIM),
    ] = None,
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp",
            help=f"bf16 mixed precision on CUDA. {_default('amp')}",
            show_default=False,
            rich_help_panel=_OPTIM,
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="CPU threads for torch (default: torch's).", rich_help_panel=_OPTIM),
    ] = None,
    log_every: Annotated[
        int | None,
        typer.Option(
            help=f"Log pairs every N steps. {_default('log.every')}", rich_help_panel=_LOG
        ),
    ] = None,
    log_queries: Annotated[
        int | None,
        typer.Option(
            help=f"Queries logged per logged step (0 = whole batch). {_default('log.queries')}",
            rich_help_panel=_LOG,
        ),
    ] = None,
    log: Annotated[
        bool | None,
        typer.Option(
            "--log/--no-log",
            help="Rank logging on (the default) or off (steps and evals are always recorded).",
            show_default=False,
            rich_help_panel=_LOG,
        ),
    ] = None,
    knn_every: Annotated[
        int | None,
        typer.Option(
            help=f"kNN monitor every N epochs (0 = only at the end). {_default('eval.knn_every')}",
            rich_help_panel=_LOG,
        ),
    ] = None,
    runs_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Directory that holds runs (default: runs).",
            show_default=False,
            rich_help_panel=_RUN,
        ),
    ] = None,
    out: OutAlias = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Run name; the run goes to RUNS_DIR/NAME (default: preset, band, seed and "
            "time; a second run started in the same second gets -2).",
            show_default=False,
            rich_help_panel=_RUN,
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            metavar="RUN",
            help="Continue the interrupted run in this directory with "
            "its saved config (no other options).",
            rich_help_panel=_RUN,
        ),
    ] = None,
    stop_after: Annotated[
        int | None,
        typer.Option(
            metavar="STEPS",
            min=1,
            help="Stop cleanly once this many steps (of the whole run) are done: checkpoint, "
            "flushed logs, exit 0; continue later with --resume. For time-limited jobs.",
            rich_help_panel=_RUN,
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel=_RUN)
    ] = False,
) -> None:
    """Train a MoCo v2 run that logs query-negative similarities and ranks to Parquet.

    The run directory (printed on stdout at the end) holds manifest.json, the log tables
    pairs/, queries/, steps/, evals/, samples/, classes/ (Parquet, see docs/schema.md) and
    checkpoints/last.pt. Options override the preset, which an optional --config file
    overrides first. Ctrl-C stops cleanly after the current step; continue with --resume RUN.

    Several processes: launch the same command with torchrun (DDP; NCCL on GPUs, gloo on
    CPUs); --batch-size is the global batch, shared by the processes, and each process logs
    its share of the queries to its own files (docs/scaling.md).

    Examples:

    * `hardstat train --preset tiny`

    * `hardstat train --preset cifar10-cpu --dataset npz:../shared/data/cifar10 --epochs 1`

    * `hardstat train --preset cifar10 --dataset cifar10 --download --band 0-5`

    * `hardstat train --resume runs/NAME`

    * `torchrun --nproc-per-node 8 -m hardstat train --preset cifar10 --dataset cifar10:DIR`
    """
    from hardstat import config as cfg
    from hardstat import preflight, runs

    # cheap checks first: names, paths, config, dataset and device before torch is imported
    parent = either(runs_dir, out, "--runs-dir") or Path("runs")
    if name is not None:
        runs.check_run_name(name)
    for what, value in (("--runs-dir", parent), ("--resume", resume), ("--config", config)):
        if value is not None:
            runs.check_text(value, what)
    flags = {
        "data.dataset": ("--dataset", dataset),
        "data.download": ("--download", download or None),
        "data.subset": ("--subset", subset),
        "band": ("--band", band),
        "model.backbone": ("--backbone", backbone.value if backbone else None),
        "model.queue_size": ("--queue-size", queue_size),
        "model.temperature": ("--temperature", temperature),
        "model.momentum": ("--momentum", momentum),
        "model.symmetric": ("--symmetric", symmetric),
        "optim.epochs": ("--epochs", epochs),
        "optim.batch_size": ("--batch-size", batch_size),
        "optim.lr": ("--lr", lr),
        "seed": ("--seed", seed),
        "device": ("--device", device),
        "amp": ("--amp", amp),
        "threads": ("--threads", threads),
        "log.every": ("--log-every", log_every),
        "log.queries": ("--log-queries", log_queries),
        "log.enabled": ("--log", log),
        "eval.knn_every": ("--knn-every", knn_every),
    }
    changes = overrides(flags, set_)
    if resume is not None:
        if changes or config or name or preset or runs_dir or out:  # not --stop-after
            raise cfg.ConfigError(
                "--resume continues a run with its saved config; give no other options "
                f"(got {', '.join(sorted(changes)) or '--config/--name/--preset/--runs-dir'})"
            )
        run_dir, conf, spec = _saved_run(resume)
        if spec is None:  # finished: nothing to do, nothing changed
            note(f"run {resume} is already finished; nothing to resume")
            result_line(str(resume))
            return
    else:
        base = cfg.preset((preset or DEFAULT_PRESET).value).to_dict()
        if config is not None:
            base = cfg.merge_dicts(base, cfg.load_config_file(config))
        with in_flag_words(flags, set_):
            conf = cfg.TrainConfig.from_dict(base).replace(**changes)
        spec = conf.data.dataset
        run_dir = parent / (
            name or default_run_name((preset or DEFAULT_PRESET).value, conf.band, conf.seed)
        )
    with in_flag_words(flags, set_):
        preflight.check_dataset(spec, download=conf.data.download)
        preflight.check_device(conf.device)
    if resume is None and runs.main_process():  # other torchrun processes get it from process 0
        run_dir = runs.claim_run_dir(run_dir, unique=name is None)

    from hardstat.train.loop import train as run_training

    try:
        result = run_training(
            conf, run_dir, resume=resume is not None, progress=not quiet, stop_after=stop_after
        )
    except BaseException:
        if resume is None:
            runs.remove_if_empty(run_dir)
        raise
    if not result.main:  # under torchrun the main process reports for all
        return
    again = shlex.join(["hardstat", "train", "--resume", str(result.run_dir)])
    if result.interrupted and stop_after is not None and result.steps_done >= stop_after:
        note(f"stopped after step {result.steps_done} (--stop-after); continue with: {again}")
        result_line(str(result.run_dir))
        return
    if result.interrupted:
        note(f"interrupted after step {result.steps_done}; continue with: {again}")
        result_line(str(result.run_dir))
        raise typer.Exit(130)
    if result.knn_top1 is not None:
        note(f"final kNN top-1: {result.knn_top1:.4f}")
    result_line(str(result.run_dir))


def _saved_run(run_dir: Path) -> tuple[Path, Any, str | None]:
    """The run to resume, its saved config and its dataset spec (None: the run is finished);
    checks (without torch) that there is something to resume, so a wrong path fails at once."""
    from hardstat import runs
    from hardstat.errors import RunError

    manifest = runs.read_manifest(run_dir)
    runs.check_writable(run_dir, manifest)
    runs.check_resumable(run_dir, manifest)
    conf = runs.manifest_config(run_dir, manifest)
    if manifest.get("status") == "finished":
        return run_dir, conf, None
    spec = manifest["dataset"].get("spec") if isinstance(manifest.get("dataset"), dict) else None
    if not isinstance(spec, str):
        raise RunError(f"{run_dir} names no dataset spec (dataset.spec); restore its manifest")
    return run_dir, conf, spec
