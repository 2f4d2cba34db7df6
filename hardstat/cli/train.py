"""``hardstat train``: train (or resume) an instrumented MoCo v2 run."""

from __future__ import annotations

import re
import shlex
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from hardstat.cli.errors import note, reports_errors, result_line


class Preset(StrEnum):
    tiny = "tiny"
    demo = "demo"
    cifar10_cpu = "cifar10-cpu"
    cifar10 = "cifar10"


class Backbone(StrEnum):
    convnet = "convnet"
    resnet18 = "resnet18"
    resnet50 = "resnet50"


_DATA = "Data"
_MODEL = "Model and loss"
_OPTIM = "Optimization"
_LOG = "Rank logging and evaluation"
_RUN = "Run"


def default_run_name(preset: str, band: str, seed: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9.=+-]+", "", band.replace(",", "+").replace(":", ""))
    return f"{preset}-band{slug}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


@reports_errors
def train(
    preset: Annotated[
        Preset,
        typer.Option(
            help="Starting configuration: tiny (synthetic shapes, a check of the pipeline), "
            "demo (the 2,000 real CIFAR-10 images shipped with hardstat), cifar10-cpu (small "
            "ConvNet for 2 CPU cores), cifar10 (the ResNet-18 GPU recipe). How long each "
            "takes: see docs/timings.md.",
            rich_help_panel=_RUN,
        ),
    ] = Preset.tiny,
    config: Annotated[
        Path | None,
        typer.Option(
            help="TOML or JSON file with sections data, model, optim, log, "
            "eval and top-level keys (band, seed, device...), applied over the preset.",
            rich_help_panel=_RUN,
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Dataset spec: synthetic[:N], npz:DIR, cifar10[:ROOT], "
            "cifar100[:ROOT], folder:DIR.",
            rich_help_panel=_DATA,
        ),
    ] = None,
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
            "percent of the queue: 0-100 (all), 0-5 (hardest 5%), 5-100, "
            "0.1-100, unions 0-5,50-55, random:5 (5% at random), or random=5-100 (as many "
            "at random as 5-100 keeps).",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    backbone: Annotated[Backbone | None, typer.Option(rich_help_panel=_MODEL)] = None,
    queue_size: Annotated[
        int | None,
        typer.Option(
            "--queue-size", "-K", help="K, negatives in the queue.", rich_help_panel=_MODEL
        ),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="T, softmax temperature.", rich_help_panel=_MODEL)
    ] = None,
    momentum: Annotated[
        float | None, typer.Option(help="m, key-encoder momentum.", rich_help_panel=_MODEL)
    ] = None,
    symmetric: Annotated[
        bool | None,
        typer.Option(
            "--symmetric/--asymmetric",
            help="Symmetrized loss (both views as queries; the log records the first direction).",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(rich_help_panel=_OPTIM)] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", "-B", rich_help_panel=_OPTIM)
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="Learning rate (default 0.06 x batch / 512).", rich_help_panel=_OPTIM),
    ] = None,
    seed: Annotated[int | None, typer.Option(rich_help_panel=_OPTIM)] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda, cuda:N.", rich_help_panel=_OPTIM)
    ] = None,
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp", help="bf16 mixed precision on CUDA.", rich_help_panel=_OPTIM
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch.", rich_help_panel=_OPTIM)
    ] = None,
    log_every: Annotated[
        int | None, typer.Option(help="Log pairs every N steps.", rich_help_panel=_LOG)
    ] = None,
    log_queries: Annotated[
        int | None,
        typer.Option(
            help="Queries logged per logged step (0 = whole batch).", rich_help_panel=_LOG
        ),
    ] = None,
    log: Annotated[
        bool | None,
        typer.Option(
            "--log/--no-log",
            help="Rank logging on or off (steps and evals are always recorded).",
            rich_help_panel=_LOG,
        ),
    ] = None,
    knn_every: Annotated[
        int | None,
        typer.Option(
            help="kNN monitor every N epochs (0 = only at the end).", rich_help_panel=_LOG
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override any config key by its dotted path, e.g. --set optim.lr=0.1 --set "
            "model.width=64 (repeatable; values parsed as JSON when possible, else strings; "
            "applied after the other options).",
            rich_help_panel=_RUN,
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Directory that holds runs.", rich_help_panel=_RUN)
    ] = Path("runs"),
    name: Annotated[
        str | None,
        typer.Option(
            help="Run name; the run goes to OUT/NAME (default: preset, band, seed and time).",
            rich_help_panel=_RUN,
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
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
    from hardstat import runs
    from hardstat.errors import ConfigError

    # cheap checks first: a bad name or path is reported before torch is imported
    if name is not None:
        runs.check_run_name(name)
    for what, value in (("--out", out), ("--resume", resume), ("--config", config)):
        if value is not None:
            runs.check_text(value, what)
    overrides: dict[str, Any] = {
        "data.dataset": dataset,
        "data.download": download or None,
        "data.subset": subset,
        "band": band,
        "model.backbone": backbone.value if backbone else None,
        "model.queue_size": queue_size,
        "model.temperature": temperature,
        "model.momentum": momentum,
        "model.symmetric": symmetric,
        "optim.epochs": epochs,
        "optim.batch_size": batch_size,
        "optim.lr": lr,
        "seed": seed,
        "device": device,
        "amp": amp,
        "threads": threads,
        "log.every": log_every,
        "log.queries": log_queries,
        "log.enabled": log,
        "eval.knn_every": knn_every,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    sets = dict(parse_override(text) for text in set_ or [])
    if resume is not None:
        if overrides or sets or config is not None or name is not None:  # not --stop-after
            raise ConfigError(
                "--resume continues a run with its saved config; give no other options "
                f"(got {', '.join(sorted({**overrides, **sets})) or '--config/--name'})"
            )
        run_dir, conf = resume, _saved_config(resume)
    else:
        base = cfg.preset(preset.value).to_dict()
        if config is not None:
            base = cfg.merge_dicts(base, cfg.load_config_file(config))
        conf = cfg.TrainConfig.from_dict(base).replace(**overrides).replace(**sets)
        run_dir = out / (name or default_run_name(preset.value, conf.band, conf.seed))
        runs.check_new_run_dir(run_dir)

    from hardstat.train.loop import train as run_training

    result = run_training(
        conf, run_dir, resume=resume is not None, progress=not quiet, stop_after=stop_after
    )
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


def _saved_config(run_dir: Path) -> Any:
    """The saved config of a run to resume; checks (without torch) that there is something to
    resume, so a wrong path fails at once."""
    from hardstat import runs

    manifest = runs.read_manifest(run_dir)
    runs.check_writable(run_dir, manifest)
    runs.check_resumable(run_dir, manifest)
    return runs.manifest_config(run_dir, manifest)


def parse_override(text: str) -> tuple[str, Any]:
    """One ``--set KEY=VALUE``: the dotted key and the value, parsed as JSON when it parses
    (numbers, true/false, null, "quoted strings"), else kept as the string."""
    import json

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise typer.BadParameter(
            f"expected KEY=VALUE such as optim.lr=0.1, got {text!r}", param_hint="'--set'"
        )
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value
