"""A trainer's weights sent to engines in other processes (or machines) over ``torch.distributed``.

The trainer (rank 0) and the engines (ranks 1..N) form a process group of their own, built from a
``TCPStore`` that the trainer hosts: gloo on a CPU, NCCL when the trainer's tensors are on a GPU. It is not
torch.distributed's default group, so a trainer that runs data-parallel under ``torchrun`` keeps its own,
and an engine process that vLLM has set up for itself keeps vLLM's.

Tensors travel in buckets: consecutive tensors of one dtype flattened into one buffer of at most
:data:`BUCKET_BYTES`, so a model of many small tensors costs a few broadcasts, and a large one never needs
a second full copy. Each side learns the list of names, dtypes and shapes out of band (the engine server
gets it over HTTP), so the receiving side allocates exactly what arrives.

Every wait has a deadline (``timeout``): a peer that never joins or dies mid-transfer is an error, not a
hang.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import torch

__all__ = ["BUCKET_BYTES", "WeightGroup", "buckets", "describe", "gpu_id", "local_address"]

#: The most bytes one broadcast carries.
BUCKET_BYTES = 256 << 20

_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64,
                                                      torch.int64, torch.int32, torch.int8, torch.uint8, torch.bool)}


def describe(weights: Sequence[tuple[str, torch.Tensor]]) -> list[list[Any]]:
    """``[[name, dtype, shape], ...]``: what the receiving side needs to allocate the tensors (JSON-able)."""
    return [[name, str(t.dtype).removeprefix("torch."), list(t.shape)] for name, t in weights]


def buckets(meta: Sequence[Sequence[Any]], limit: int = BUCKET_BYTES) -> list[list[int]]:
    """Indices of ``meta`` grouped into runs of consecutive tensors of one dtype, each at most ``limit`` bytes
    (a larger tensor travels alone)."""
    groups: list[list[int]] = []
    size, current = 0, None
    for i, (_, dtype, shape) in enumerate(meta):
        nbytes = _numel(shape) * _dtype(dtype).itemsize
        if not groups or dtype != current or size + nbytes > limit:
            groups.append([])
            size, current = 0, dtype
        groups[-1].append(i)
        size += nbytes
    return groups


def local_address(remote: str, port: int = 80) -> str:
    """The address of this machine's interface on the route to ``remote`` (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((socket.gethostbyname(remote), port))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


class WeightGroup:
    """One side of the trainer-to-engines group. The trainer calls :meth:`host` then :meth:`connect`; each
    engine calls :meth:`join` with the trainer's address and the port :meth:`host` chose."""

    def __init__(self, store: Any, rank: int, world_size: int, address: str, timeout: float, backend: str,
                 device: int | None = None):
        if backend not in ("gloo", "nccl"):
            raise ValueError(f"a weight group's backend is gloo or nccl; got {backend!r}")
        self.store, self.rank, self.world_size = store, rank, world_size
        self.address, self.timeout, self.backend = address, timeout, backend
        # NCCL moves GPU tensors (each member on its own GPU: ``device``, or the current one); gloo CPU tensors
        self.device = torch.device("cuda", torch.cuda.current_device() if device is None else device) \
            if backend == "nccl" else torch.device("cpu")
        self.port = int(store.port)
        self._group: Any = None

    @classmethod
    def host(cls, address: str, engines: int, timeout: float = 300.0, backend: str = "gloo",
             device: int | None = None) -> WeightGroup:
        """The trainer's side, listening on ``address`` (an interface the engines can reach) on a free port."""
        store = torch.distributed.TCPStore(address, 0, engines + 1, is_master=True, wait_for_workers=False,
                                           timeout=datetime.timedelta(seconds=timeout))
        return cls(store, 0, engines + 1, address, timeout, backend, device)

    @classmethod
    def join(cls, host: str, port: int, rank: int, world_size: int, timeout: float = 300.0,
             backend: str = "gloo") -> WeightGroup:
        """An engine's side: connect to the trainer's store and form the group (blocks until all have joined)."""
        store = torch.distributed.TCPStore(host, port, world_size, is_master=False,
                                           timeout=datetime.timedelta(seconds=timeout))
        group = cls(store, rank, world_size, local_address(host, port), timeout, backend)
        group.connect()
        return group

    def connect(self) -> None:
        """Form the process group; returns when every member has joined (or raises after ``timeout``)."""
        if self._group is not None:
            return
        timeout = datetime.timedelta(seconds=self.timeout)
        dist = torch.distributed
        if self.backend == "nccl":
            options = dist.ProcessGroupNCCL.Options()
            options._timeout = timeout
            self._group = dist.ProcessGroupNCCL(self.store, self.rank, self.world_size, options)
        else:
            options = dist.ProcessGroupGloo._Options()
            options._timeout = timeout
            options._devices = [dist.ProcessGroupGloo.create_device(hostname=self.address)]
            self._group = dist.ProcessGroupGloo(self.store, self.rank, self.world_size, options)

    def send(self, weights: Sequence[tuple[str, torch.Tensor]], limit: int = BUCKET_BYTES) -> None:
        """Rank 0: broadcast ``weights`` (in the order :func:`describe` listed them) to every engine."""
        self.connect()
        meta = describe(weights)
        for group in buckets(meta, limit):
            flat = torch.cat([weights[i][1].detach().reshape(-1).to(self.device) for i in group])
            self._group.broadcast(flat, 0).wait()

    def receive(self, meta: Sequence[Sequence[Any]], limit: int = BUCKET_BYTES) -> Iterator[tuple[str, torch.Tensor]]:
        """An engine: the tensors rank 0 sends for ``meta``, as ``(name, tensor)`` pairs in order."""
        self.connect()
        for group in buckets(meta, limit):
            sizes = [_numel(meta[i][2]) for i in group]
            flat = torch.empty(sum(sizes), dtype=_dtype(meta[group[0]][1]), device=self.device)
            self._group.broadcast(flat, 0).wait()
            for i, part in zip(group, flat.split(sizes)):
                yield meta[i][0], part.view(meta[i][2])

    def close(self) -> None:
        """Leave the group (its connections close with it)."""
        group, self._group, self.store = self._group, None, None
        shutdown = getattr(group, "shutdown", None) or getattr(group, "abort", None)
        if shutdown is not None:
            try:
                shutdown()
            except Exception:  # noqa: BLE001 - a peer already gone: nothing left to close
                pass


def gpu_id(index: int | None = None) -> str | None:
    """A GPU's identity across processes (its UUID), to tell whether two processes share one GPU."""
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device() if index is None else index)
    return str(getattr(props, "uuid", "")) or None


def _dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"a weight of dtype {name!r}; expected one of {', '.join(_DTYPES)}") from None


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
