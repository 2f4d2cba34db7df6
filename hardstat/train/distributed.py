"""Several training processes (``torchrun``, DistributedDataParallel): who this process is, and
the few collectives MoCo needs.

Launched by ``torchrun`` (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``), :func:`setup` joins the process group: NCCL on CUDA, gloo on
the CPU. Without those variables everything here is the identity and training runs as one
process. Words: a *process* is one of the ``processes`` (torch.distributed's rank and world size;
hardstat keeps "rank" for the difficulty rank of a negative); process 0 is the *main* process.

Beside the data-parallel group, a gloo group carries small host-side messages (stop requests,
per-process checkpoint state, errors), so they never wait for the GPU.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from hardstat.errors import ConfigError, HardstatError

T = TypeVar("T")

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT = datetime.timedelta(minutes=int(os.environ.get("HARDSTAT_DIST_TIMEOUT_MIN", "60")))
"""How long a collective waits for the other processes (the main process's kNN evaluation runs
while the others wait); ``HARDSTAT_DIST_TIMEOUT_MIN`` overrides it."""


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes."""

    index: int = 0  # torch.distributed rank: 0 .. count-1
    count: int = 1  # torch.distributed world size
    local: int = 0  # index on this machine (LOCAL_RANK), picks the GPU

    @property
    def main(self) -> bool:
        return self.index == 0

    @property
    def distributed(self) -> bool:
        return self.count > 1

    def share(self, total: int) -> int:
        """This process's part of ``total`` items dealt out evenly (earlier processes get the
        remainder): e.g. 5 over 2 processes is 3 and 2."""
        return total // self.count + (1 if self.index < total % self.count else 0)


_control: Any = None  # the gloo group for host-side messages


def from_environment() -> Processes:
    """Who this process is, from torchrun's variables (one process when they are absent)."""
    if "WORLD_SIZE" not in os.environ:
        return Processes()
    try:
        return Processes(
            int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
        )
    except (KeyError, ValueError) as e:
        raise ConfigError(
            f"WORLD_SIZE is set but {e} is missing or not an integer; launch with torchrun, "
            "which sets RANK, WORLD_SIZE and LOCAL_RANK, or unset WORLD_SIZE"
        ) from e


def setup(device: str) -> tuple[Processes, torch.device]:
    """Join the process group if launched by torchrun; return this process and its device.

    ``device`` is the config's: ``auto`` or ``cuda`` becomes ``cuda:LOCAL_RANK`` when several
    processes train, ``cpu`` trains with gloo. The group is joined once per process and left
    at exit, so one process can train several runs (a sweep) in turn: joining a second time
    would read the first group's stale addresses from torchrun's store.
    """
    global _control
    procs = from_environment()
    try:
        dev = _device(device, procs)
    except HardstatError as e:  # before any group exists: each process checks the same
        e.reported_elsewhere = not procs.main  # config, and process 0 reports
        raise
    if not procs.distributed:
        return procs, dev
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)
        atexit.register(_leave)
    if dist.get_world_size() != procs.count or dist.get_rank() != procs.index:
        raise ConfigError("the process group disagrees with RANK/WORLD_SIZE; relaunch")
    if _control is None:
        _control = dist.new_group(backend="gloo", timeout=TIMEOUT)
    return procs, dev


def _leave() -> None:
    global _control
    if dist.is_initialized():
        dist.destroy_process_group()
    _control = None


def setup_device(name: str, procs: Processes | None = None) -> torch.device:
    """The torch device for config ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""
    return _device(name, procs or Processes())


def _device(name: str, procs: Processes) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if procs.distributed and device.index is not None:
            raise ConfigError(
                f"--device {name} cannot be used with several processes: each process "
                "takes cuda:LOCAL_RANK; give --device cuda"
            )
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name} requested but CUDA is not available; use --device cpu"
            )
        if procs.distributed:
            device = torch.device("cuda", procs.local)
    return device


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def data_parallel(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` in DistributedDataParallel, gradients averaged over processes; buffers are
    not re-broadcast every step (MoCo keeps its queue identical by construction, every process
    builds the model from the same seed, and BatchNorm statistics stay per process, as in
    MoCo)."""
    import inspect

    ddp = torch.nn.parallel.DistributedDataParallel
    if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters:  # torch >= 2.14
        return ddp(module, forward_sync_buffers=False)
    return ddp(module, broadcast_buffers=False)


# -- tensors: the data-parallel group (NCCL on GPUs) ------------------------------------------
@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) from every process -> (processes * n, ...), in process order (identity alone)."""
    if not active():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def broadcast_(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``x`` on every process with process ``src``'s (in place; identity alone)."""
    if active():
        dist.broadcast(x, src)
    return x


@torch.no_grad()
def mean_over_processes(x: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``x`` over processes (a copy; ``x`` itself alone)."""
    if not active():
        return x
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / dist.get_world_size()


# -- host-side messages: the gloo control group ------------------------------------------------
def any_process(flag: bool) -> bool:
    """True on every process if ``flag`` is true on any (e.g. one process was asked to stop)."""
    if not active():
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return bool(t.item())


def any_flags(*flags: bool) -> tuple[bool, ...]:
    """:func:`any_process` for several flags at once (one collective)."""
    if not active():
        return tuple(flags)
    t = torch.tensor([int(f) for f in flags])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return tuple(bool(v) for v in t.tolist())


def gather_objects(obj: T) -> list[T]:
    """Every process's ``obj`` (picklable), in process order, on every process."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj, group=_control)
    return out


def broadcast_object(obj: T, src: int = 0) -> T:
    """Process ``src``'s ``obj`` on every process."""
    if not active():
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=src, group=_control)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier(group=_control)


def local_first(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the first process of every machine (LOCAL_RANK 0), then on the others:
    e.g. a download into a per-machine directory, then reading it.

    A :class:`HardstatError` in any process is raised on every process, so none waits for a
    process that has already failed.
    """
    if not active():
        return fn()
    procs = from_environment()
    result: T | None = None
    error: HardstatError | None = None
    if procs.local == 0:
        try:
            result = fn()
        except HardstatError as e:
            error = e
    raise_if_any(error)  # every process, both times: these are collectives
    if procs.local != 0:
        try:
            result = fn()
        except HardstatError as e:
            error = e
    raise_if_any(error)
    return result  # type: ignore[return-value]


def on_main(fn: Callable[[], object]) -> None:
    """Run ``fn`` on the main process only; its :class:`HardstatError` is raised everywhere."""
    if not active():
        fn()
        return
    error: HardstatError | None = None
    if from_environment().main:
        try:
            fn()
        except HardstatError as e:
            error = e
    raise_if_any(error)


@contextlib.contextmanager
def agreed() -> Iterator[None]:
    """Collective: the block succeeds on every process, or every process raises (the error of
    the lowest-numbered failing process, printed once, by that process)."""
    try:
        yield
    except HardstatError as e:
        raise_if_any(e)
    raise_if_any(None)


def raise_if_any(mine: HardstatError | None) -> None:
    """Collective: if any process has an error, raise on every process. The lowest-numbered
    failing process raises its own error; every other process raises a copy of it marked
    ``reported_elsewhere``, so an error that all processes hit is printed once, and one that
    only process N hits is printed by process N."""
    if not active():
        if mine is not None:
            raise mine
        return
    errors = gather_objects(_picklable(mine))
    failed = [i for i, e in enumerate(errors) if e is not None]
    if not failed:
        return
    if failed[0] == dist.get_rank() and mine is not None:
        raise mine
    first = errors[failed[0]]
    assert first is not None
    first.reported_elsewhere = True
    raise first from None


def _picklable(error: HardstatError | None) -> HardstatError | None:
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return HardstatError(str(error))
