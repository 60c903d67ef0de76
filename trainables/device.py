"""Where a trial trains and in which precision: what Ray granted it decides, not what torch happens to see.

Ray 2.60 no longer hides GPUs from tasks that reserved none, so `torch.cuda.is_available()` is True for a
0-GPU trial on a GPU node: it would train on `cuda:0` unreserved, beside the trials that did reserve it.
And a trial that was given a GPU but cannot see CUDA (a CPU build of torch on the workers) would otherwise train
for hours on CPU without a word. Tests and the cluster simulation declare logical GPUs on CPU machines
(`ray.init(num_gpus=2)`); they set SIMULATED_GPUS_ENV, the one switch that lets a GPU trial run on CPU.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from trainables.gpu_memory import memory_fraction

SIMULATED_GPUS_ENV = "EMOTION_SWEEPS_SIMULATED_GPUS"
# cuBLAS's workspace setting that makes its matmuls deterministic (PyTorch's reproducibility notes): 8 buffers of
# 4096 KiB. cuBLAS reads it when the process creates its first handle, so it is set before any CUDA work.
DETERMINISTIC_CUBLAS_WORKSPACE = ":4096:8"


class NoCudaError(RuntimeError):
    """A trial holds a GPU reservation but torch cannot use CUDA."""


def gpus_simulated() -> bool:
    return os.environ.get(SIMULATED_GPUS_ENV, "0") not in ("", "0", "false")


def trial_device(gpus: float, cpus: float) -> torch.device:
    """The device for a trial Ray gave `gpus` (a share of one GPU, or whole GPUs) and `cpus`.

    A share below one GPU also caps this process's CUDA memory to that share less one CUDA context
    (gpu_memory.memory_fraction), so trials packed onto one GPU cannot starve each other: an out-of-memory error
    names the trial that overran, not its neighbour."""
    if gpus > 0:
        if torch.cuda.is_available():
            device = torch.device("cuda", 0)  # Ray sets CUDA_VISIBLE_DEVICES to the GPU(s) it granted
            if gpus < 1:
                total_gb = torch.cuda.get_device_properties(device).total_memory / 1e9
                torch.cuda.set_per_process_memory_fraction(memory_fraction(gpus, total_gb), device)
            return device
        if not gpus_simulated():
            raise NoCudaError(
                f"this trial was given {gpus:g} GPU but torch {torch.__version__} sees no CUDA device "
                f"(CUDA build: {torch.version.cuda or 'none'}); install a CUDA build of torch on the GPU nodes, "
                f"or set {SIMULATED_GPUS_ENV}=1 where GPUs are only declared (tests)")
    torch.set_num_threads(max(1, int(cpus)))
    return torch.device("cpu")


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX or AVX512-BF16). torch's own check
    (`torch.ops.mkldnn._is_mkldnn_bf16_supported`) is also True where bf16 is only emulated, and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no way to tell cheaply, so no
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_dtype(device: torch.device, cpu_bf16: bool = False,
                   capability: tuple[int, int] | None = None) -> torch.dtype | None:
    """bf16 on GPUs that compute it natively (Ampere, compute capability 8.0, and newer), fp16 (with a
    GradScaler) before that. `torch.cuda.is_bf16_supported()` is True on T4/V100 too, where bf16 is emulated and
    slow, so it cannot decide this. On CPU fp32 (None), or bf16 when asked (`cpu_bf16`) and the CPU has it
    natively. `capability` is the GPU's (major, minor), read from `device` when not given (tests give one)."""
    if device.type != "cuda":
        return torch.bfloat16 if cpu_bf16 and native_bf16_cpu() else None
    major, _ = capability or torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def dtype_name(dtype: torch.dtype | None) -> str:
    """"bfloat16", "float16" or "float32" (None: no autocast), as results, predictions.npz and decision.json name a
    precision."""
    return str(dtype or torch.float32).removeprefix("torch.")


def seed_trial(seed: int, deterministic: bool) -> None:
    """Seed every generator a trial may draw from (Python's, numpy's, torch's on CPU and every GPU). With
    `deterministic` (--deterministic) also make torch's kernels reproducible: deterministic algorithms (an op that
    has none raises rather than varying silently), cuBLAS's deterministic workspace, and no cuDNN autotuning,
    which may pick another algorithm each run. Called before the trial touches CUDA, for cuBLAS's setting."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = DETERMINISTIC_CUBLAS_WORKSPACE
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def trial_resources() -> tuple[float, float]:
    """(GPUs, CPUs) Ray reserved for the running trial."""
    from ray import tune

    resources = tune.get_context().get_trial_resources().required_resources
    return float(resources.get("GPU", 0.0)), float(resources.get("CPU", 1.0))
