"""Cheap checks before heavy imports: dataset specs, their paths, and the device, without torch.

Importing torch takes seconds (15-20 s on a cold cache); a wrong path or an unusable device
should not. The CLI calls these before it imports the trainer, and the loaders of
:mod:`hardstat.train.data` call the same functions, so each message is written once. The
checks look only at the file system: a file that exists but does not load is still reported
by the loader.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hardstat.errors import ConfigError, DatasetError

KINDS: tuple[str, ...] = ("synthetic", "demo", "npz", "cifar10", "cifar100", "folder")
SPEC_HELP = "synthetic[:N], demo, npz:PATH, cifar10[:ROOT], cifar100[:ROOT] or folder:PATH"
DEFAULT_ROOT = "~/.cache/hardstat/data"
"""Where torchvision's CIFAR files live unless the spec names a root."""
SYNTHETIC_DEFAULT_SIZE = 512
SYNTHETIC_MIN_SIZE = 10
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
"""The folder torchvision unpacks each CIFAR archive into, under the root."""
GPU_DRIVER_FILES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")
"""Any of these means a GPU driver may be present (NVIDIA, ROCm, WSL); then torch decides."""


def parse_dataset_spec(spec: str) -> tuple[str, str | None]:
    """``"npz:/data/c10"`` -> ``("npz", "/data/c10")``; ``"synthetic"`` -> ``("synthetic", None)``.

    The kind is lower-cased and the argument stripped; a synthetic size is checked to be a whole
    number >= 10. Raises DatasetError on an unknown kind or a missing/empty argument.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError(f"empty dataset spec; use {SPEC_HELP}")
    head, sep, tail = spec.strip().partition(":")
    kind = head.strip().lower()
    arg = tail.strip() if sep else None
    if kind not in KINDS:
        raise DatasetError(f"unknown dataset {head.strip()!r} in spec {spec!r}; use {SPEC_HELP}")
    if sep and not arg:
        raise DatasetError(f"dataset spec {spec!r} has nothing after ':'; use {SPEC_HELP}")
    if kind in ("npz", "folder") and arg is None:
        raise DatasetError(f"dataset spec {spec!r} needs a path: {kind}:PATH")
    if kind == "demo" and arg is not None:
        raise DatasetError(f"dataset spec {spec!r}: demo takes no argument")
    if kind == "synthetic" and arg is not None and not _is_size(arg):
        raise DatasetError(
            f"synthetic:N needs a whole number N >= {SYNTHETIC_MIN_SIZE}, got {arg!r}"
        )
    return kind, arg


def _is_size(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) >= SYNTHETIC_MIN_SIZE


def check_dataset(spec: str, *, download: bool = False) -> None:
    """Parse ``spec`` and check that what it names is there (DatasetError with what to do)."""
    kind, arg = parse_dataset_spec(spec)
    if kind == "npz":
        assert arg is not None
        npz_files(Path(arg).expanduser().resolve())
    elif kind == "folder":
        assert arg is not None
        check_folder(Path(arg).expanduser().resolve())
    elif kind in CIFAR_FOLDERS and not download:
        root = Path(arg if arg is not None else DEFAULT_ROOT).expanduser().resolve()
        if not (root / CIFAR_FOLDERS[kind]).is_dir():
            raise cifar_not_found(kind, root)


def npz_files(path: Path) -> tuple[Path, Path | None, Path | None]:
    """The train, test and classes files of ``npz:PATH`` (a directory or one .npz file)."""
    if path.is_dir():
        if not (path / "train.npz").is_file():
            raise DatasetError(
                f"{path} has no train.npz; npz:DIR needs DIR/train.npz "
                "(optional test.npz and classes.txt), or pass npz:FILE.npz"
            )
        return path / "train.npz", path / "test.npz", path / "classes.txt"
    if path.is_file():
        return path, None, None
    raise DatasetError(f"{path} does not exist; pass npz:DIR (with train.npz) or npz:FILE.npz")


def check_folder(root: Path) -> None:
    if not root.is_dir():
        raise DatasetError(
            f"{root} is not a directory; folder:PATH needs PATH/train/<class>/*.jpg "
            "(or PATH/<class>/*.jpg)"
        )


def cifar_not_found(kind: str, root: Path) -> DatasetError:
    return DatasetError(
        f"{kind} not found under {root}; pass --download to fetch it (needs internet) "
        "or use npz:DIR with a local copy"
    )


def check_device(name: str) -> None:
    """Refuse a device this machine cannot have, without importing torch: CUDA where no GPU
    driver is installed (or CUDA_VISIBLE_DEVICES hides every GPU), MPS off macOS. Anything
    that may work is left to torch."""
    kind = name.split(":")[0]
    if kind == "cuda" and sys.platform.startswith("linux"):
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
        if hidden or not any(os.path.exists(f) for f in GPU_DRIVER_FILES):
            why = "CUDA_VISIBLE_DEVICES hides every GPU" if hidden else "no GPU driver found"
            raise ConfigError(
                f"device {name} requested but CUDA is not available ({why}); use --device cpu"
            )
    if kind == "mps" and sys.platform != "darwin":
        raise ConfigError(f"device {name} is for Apple silicon Macs; use --device cpu")
