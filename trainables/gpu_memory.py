"""What a trial's share of a GPU holds, for the planner that sizes the share (sweeps/cluster.py share_of_gpu) and
the trial that caps its CUDA memory to it (trainables/device.py trial_device). No torch here: the sweep's driver
imports it to plan.
"""
from __future__ import annotations

# What each trial process holds outside PyTorch's allocator, which --gpus-per-trial's memory cap does not count:
# the CUDA context (~300-500 MB with torch's kernels loaded, PyTorch's "CUDA semantics" notes) plus cuBLAS and
# cuDNN handles and workspaces (cuBLAS: up to 4 MiB per stream by default, more with CUBLAS_WORKSPACE_CONFIG).
# Packed shares leave room for it: share_of_gpu sizes a share so that a trial's training memory plus this context
# fits in share x the GPU's memory, so n trials of 1/n GPU fit on one GPU together with their n contexts. A trial's
# cap on its allocator (torch.cuda.set_per_process_memory_fraction) must therefore be its share less its context
# (memory_fraction): capped at the whole share, n trials may take n contexts more than the GPU has, and the
# out-of-memory error then strikes whichever trial allocates next, not the one that overran.
CUDA_CONTEXT_GB = 0.5


def memory_fraction(share: float, gpu_memory_gb: float) -> float:
    """The fraction of the GPU's memory a trial with `share` (below one GPU) lets its allocator take: its share
    less one CUDA context, (share x GPU GB - CUDA_CONTEXT_GB) / GPU GB, so that trials packed onto one GPU fit on it
    with their contexts and an out-of-memory error names the trial that overran. At least half the share: on a GPU
    so small that a context is most of a share, share_of_gpu would have sized a larger share anyway, and a cap near
    zero would only fail every trial."""
    share_gb = share * gpu_memory_gb
    return max(share_gb - CUDA_CONTEXT_GB, share_gb / 2) / gpu_memory_gb
