"""Where and how the loop runs: device, precision, data placement, determinism, signals.

The policies ``train_gan`` applies before its first step (which device, which autocast
dtype and memory format), the deterministic-kernels
switch, and the SIGTERM / SIGINT handling that turns a kill request into a checkpoint and
then an exit (with the one collective the ranks need to agree on stopping).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from pathlib import Path

    from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def choose_training_device(setting: str, rank: int) -> torch.device:
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"training.device is {setting!r} but torch sees no CUDA device. "
                               "Set training.device to auto or cpu.")
        if dist.is_initialized() and dist.get_world_size() > 1:
            # one GPU per process: torchrun's LOCAL_RANK, or the rank on a single machine
            index = int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count()))
            setting = f"cuda:{index}"
        device = torch.device(setting)
        torch.cuda.set_device(device)
        return device
    return torch.device(setting)


def ddp_device_ids(device: torch.device) -> list[int] | None:
    return [device.index] if device.type == "cuda" else None


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for fp32. 'auto': bf16 where the hardware computes in it
    (most CUDA GPUs; CPUs with AVX512-BF16 or AMX, where it is ~1.6x faster than fp32
    here), fp16 on older GPUs, else fp32 (emulated bf16 would be slower)."""
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and _cpu_has_native_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def autocast_context(device: torch.device,
              amp_dtype: torch.dtype | None) -> Callable[[], contextlib.AbstractContextManager]:
    """``autocast()`` for the forward passes: computes in ``amp_dtype`` (bf16 / fp16 run the
    convolutions on tensor cores, or AMX on recent CPUs); a no-op for fp32."""
    return partial(torch.autocast, device.type, dtype=amp_dtype or torch.bfloat16,
                   enabled=amp_dtype is not None)


def choose_memory_format(channels_last: str | bool, device: torch.device) -> torch.memory_format:
    # channels_last (NHWC) lets cuDNN pick tensor-core convolutions on GPU; on CPU it made
    # these small fp32 convolutions 2x slower, hence 'auto' = CUDA only.
    if channels_last == "auto":
        channels_last = device.type == "cuda"
    return torch.channels_last if channels_last else torch.contiguous_format


def _cpu_has_native_bf16() -> bool:
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so guarded
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


@contextlib.contextmanager
def deterministic_kernels(enabled: bool) -> Iterator[None]:
    """Deterministic kernels (bit-identical reruns) when enabled; else cuDNN autotuning."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.benchmark = not enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


class StopSignal:
    """Records SIGTERM / SIGINT instead of dying mid-step; ``resend`` re-delivers it."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # only there can we listen
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def _record(self, signum: int, frame: Any) -> None:
        if self.received is None:
            log.warning("Received %s: finishing this step and writing a checkpoint.",
                        signal.Signals(signum).name)
        self.received = signum

    def agreed(self, log_step: bool, world_size: int, device: torch.device) -> bool:
        """Whether to stop after this step: alone, as soon as a signal came; in a group, at
        log steps, when any rank got one (every rank calls this, as it is a collective)."""
        if world_size == 1:
            return self.received is not None
        return log_step and _any_rank(self.received is not None, device)

    def resend(self) -> None:
        """Restore the previous handlers and deliver the signal to them (default: exit)."""
        self.__exit__()
        if self.received is not None:
            signal.raise_signal(self.received)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (a collective: all ranks must call it)."""
    agreed = torch.tensor(int(flag), device=device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
    return bool(agreed.item())


def exit_on_signal(stop_signal: StopSignal, step: int, checkpoint_dir: Path,
                    progress: tqdm) -> NoReturn:
    progress.close()
    log.warning("Stopped at step %d on %s; checkpoint written to %s.", step,
                signal.Signals(stop_signal.received or signal.SIGTERM).name, checkpoint_dir)
    stop_signal.resend()  # default handlers: SIGTERM ends the process, SIGINT raises
    raise SystemExit(128 + (stop_signal.received or signal.SIGTERM))


def sum_over_ranks(pair: torch.Tensor) -> torch.Tensor:
    """ADA's ``[sum of signs, count]`` summed over the ranks (itself on one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(pair)
    return pair
