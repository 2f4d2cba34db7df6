"""Typed, frozen training configuration, validated at construction and saved with every run.

One override path: a preset (:data:`PRESETS`), then an optional TOML/JSON config file with the
same nested sections as :meth:`TrainConfig.to_dict`, then CLI options for the common knobs.
No torch import here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardstat.bands import Band, parse_band
from hardstat.errors import ConfigError

BACKBONES = ("convnet", "resnet18", "resnet50")
SCHEDULES = ("cosine", "constant")


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass(frozen=True)
class DataConfig:
    """Where images come from (see :func:`hardstat.train.data.load_dataset` for specs)."""

    dataset: str = "synthetic"
    subset: int | None = None
    image_size: int | None = None
    download: bool = False

    def __post_init__(self) -> None:
        _require(bool(self.dataset.strip()), "data.dataset must not be empty")
        _require(self.subset is None or self.subset > 0, "data.subset must be > 0")
        _require(self.image_size is None or self.image_size >= 8, "data.image_size must be >= 8")


@dataclass(frozen=True)
class ModelConfig:
    """MoCo v2 model: backbone, projection head, queue (K), momentum (m), temperature (T)."""

    backbone: str = "resnet18"
    width: int = 32
    dim: int = 128
    queue_size: int = 4096
    momentum: float = 0.99
    temperature: float = 0.1
    bn_splits: int = 8
    symmetric: bool = False

    def __post_init__(self) -> None:
        _require(
            self.backbone in BACKBONES,
            f"model.backbone must be one of {', '.join(BACKBONES)}; got {self.backbone!r}",
        )
        _require(self.width > 0, "model.width must be > 0")
        _require(self.dim > 0, "model.dim must be > 0")
        _require(self.queue_size > 0, "model.queue_size (K) must be > 0")
        _require(0 <= self.momentum < 1, "model.momentum (m) must be in [0, 1)")
        _require(self.temperature > 0, "model.temperature (T) must be > 0")
        _require(self.bn_splits >= 1, "model.bn_splits must be >= 1")


@dataclass(frozen=True)
class OptimConfig:
    """SGD with a cosine (or constant) schedule; lr defaults to base_lr * batch_size / 512."""

    batch_size: int = 256
    epochs: int = 200
    lr: float | None = None
    base_lr: float = 0.06
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        _require(self.batch_size >= 2, "optim.batch_size must be >= 2")
        _require(self.epochs >= 1, "optim.epochs must be >= 1")
        _require(self.lr is None or self.lr > 0, "optim.lr must be > 0")
        _require(self.base_lr > 0, "optim.base_lr must be > 0")
        _require(self.weight_decay >= 0, "optim.weight_decay must be >= 0")
        _require(0 <= self.momentum < 1, "optim.momentum must be in [0, 1)")
        _require(
            self.schedule in SCHEDULES, f"optim.schedule must be one of {', '.join(SCHEDULES)}"
        )

    @property
    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else self.base_lr * self.batch_size / 512


@dataclass(frozen=True)
class LogConfig:
    """Rank-logging cadence: every ``every`` steps, ``queries`` queries of the batch (0 = all).

    Volume of one logged step: queries x K pair rows at about 3.3 bytes each. A 200-epoch
    CIFAR-10 run at batch 512 has 97 x 200 = 19,400 steps; every 50 steps with 64 queries and
    K = 4096 that is 388 x 64 x 4096 = 102 M pairs, about 0.34 GB (batch 256: 0.68 GB).
    """

    enabled: bool = True
    every: int = 50
    queries: int = 64
    file_rows: int = 8_388_608

    def __post_init__(self) -> None:
        _require(self.every >= 1, "log.every must be >= 1")
        _require(self.queries >= 0, "log.queries must be >= 0 (0 logs every query)")
        _require(self.file_rows >= 1024, "log.file_rows must be >= 1024")


@dataclass(frozen=True)
class EvalConfig:
    """Weighted kNN monitor on the held-out split every ``knn_every`` epochs (0 = off)."""

    knn_every: int = 1
    knn_k: int = 200
    knn_t: float = 0.1

    def __post_init__(self) -> None:
        _require(self.knn_every >= 0, "eval.knn_every must be >= 0")
        _require(self.knn_k >= 1, "eval.knn_k must be >= 1")
        _require(self.knn_t > 0, "eval.knn_t must be > 0")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Validated at construction."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    band: str = "0-100"
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    checkpoint_every: int = 1
    checkpoint_minutes: float = 30.0
    threads: int | None = None

    def __post_init__(self) -> None:
        band = parse_band(self.band)
        object.__setattr__(self, "band", band.spec)
        k, b = self.model.queue_size, self.optim.batch_size
        keys_per_step = 2 * b if self.model.symmetric else b
        _require(
            k % keys_per_step == 0,
            f"queue size K={k} must be a multiple of the keys enqueued per step "
            f"({keys_per_step}{' = 2 x batch, symmetric loss' if self.model.symmetric else ''})",
        )
        _require(
            b % self.model.bn_splits == 0,
            f"batch size {b} must be divisible by model.bn_splits={self.model.bn_splits}",
        )
        band.check(k)
        _require(self.checkpoint_every >= 0, "checkpoint_every must be >= 0 (0 = only at end)")
        _require(
            self.checkpoint_minutes >= 0,
            "checkpoint_minutes must be >= 0 (0 = no checkpoints by time)",
        )
        _require(self.threads is None or self.threads >= 1, "threads must be >= 1")
        _require(
            self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
            f"device must be auto, cpu, cuda[:N] or mps; got {self.device!r}",
        )

    @property
    def parsed_band(self) -> Band:
        return parse_band(self.band)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return _build(cls, d, "")

    def replace(self, **changes: Any) -> TrainConfig:
        """Copy with dotted-path overrides, e.g. ``replace(**{"optim.epochs": 3})``."""
        d = self.to_dict()
        for path, value in changes.items():
            node = d
            *parents, leaf = path.split(".")
            for p in parents:
                if p not in node or not isinstance(node[p], dict):
                    raise ConfigError(f"unknown config section {p!r} in {path!r}")
                node = node[p]
            if leaf not in node:
                raise ConfigError(f"unknown config key {path!r}")
            node[leaf] = value
        return TrainConfig.from_dict(d)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "log": LogConfig,
    "eval": EvalConfig,
}


def _build(cls: type, d: dict[str, Any], where: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"config section {where or 'top level'} must be a table/object")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
            f"known: {', '.join(where + k for k in names)}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        if cls is TrainConfig and key in _SECTIONS:
            kwargs[key] = _build(_SECTIONS[key], value, f"{key}.")
        else:
            kwargs[key] = _coerce(names[key].type, value, where + key)
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - defensive
        raise ConfigError(f"bad config {where or 'top level'}: {e}") from e


def _coerce(annotation: Any, value: Any, key: str) -> Any:
    """Light type checking for values from files/CLI (annotations are strings here)."""
    ann = str(annotation)
    if value is None:
        if "None" not in ann:
            raise ConfigError(f"config key {key} must not be null")
        return None
    base = ann.split("|")[0].strip()
    if base == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key} must be true or false, got {value!r}")
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key} must be an integer, got {value!r}")
        return value
    if base == "float":
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ConfigError(f"config key {key} must be a number, got {value!r}")
        return float(value)
    if base == "str":
        if not isinstance(value, str):
            raise ConfigError(f"config key {key} must be a string, got {value!r}")
        return value
    return value


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a nested dict (validated later)."""
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            data = tomllib.loads(path.read_text())
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(
            f"config file {path} is not valid {path.suffix[1:] or 'TOML'}: {e}"
        ) from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table/object at top level")
    return data


def merge_dicts(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge of nested config dicts (``over`` wins)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_dicts(out[k], v)
        else:
            out[k] = v
    return out


PRESETS: dict[str, TrainConfig] = {
    # Synthetic data, a tiny ConvNet: the whole pipeline on a CPU (tests; docs/timings.md).
    "tiny": TrainConfig(
        data=DataConfig(dataset="synthetic:512"),
        model=ModelConfig(backbone="convnet", width=16, dim=32, queue_size=256, bn_splits=4),
        optim=OptimConfig(batch_size=64, epochs=3),
        log=LogConfig(every=2, queries=16),
        eval=EvalConfig(knn_every=1, knn_k=20),
    ),
    # The real CIFAR-10 sample shipped with hardstat (2,000 images); times: docs/timings.md.
    "demo": TrainConfig(
        data=DataConfig(dataset="demo"),
        model=ModelConfig(backbone="convnet", width=32, dim=128, queue_size=1024, bn_splits=8),
        optim=OptimConfig(batch_size=128, epochs=15),
        log=LogConfig(every=5, queries=64),
        eval=EvalConfig(knn_every=5),
    ),
    # CIFAR-10 sized for 2 CPU cores: small ConvNet, MoCo CIFAR recipe otherwise.
    "cifar10-cpu": TrainConfig(
        data=DataConfig(dataset="cifar10"),
        model=ModelConfig(backbone="convnet", width=32, dim=128, queue_size=4096, bn_splits=8),
        optim=OptimConfig(batch_size=256, epochs=20),
        log=LogConfig(every=50, queries=64),
        eval=EvalConfig(knn_every=1),
    ),
    # The MoCo v2 CIFAR-10 recipe (ResNet-18, CIFAR stem) for a GPU.
    "cifar10": TrainConfig(
        data=DataConfig(dataset="cifar10"),
        model=ModelConfig(backbone="resnet18", queue_size=4096, bn_splits=8),
        optim=OptimConfig(batch_size=512, epochs=200),
        log=LogConfig(every=50, queries=64),
        eval=EvalConfig(knn_every=5),
        amp=True,
    ),
}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
