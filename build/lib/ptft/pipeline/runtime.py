"""One switch for seeds, threads and deterministic kernels, called at the start of every stage; and which
process of a torchrun launch this is."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from threadpoolctl import threadpool_limits


def setup_runtime(seed: int, threads: int, deterministic: bool = True) -> None:
    """Seed every generator and fix the thread count, so a rerun gives the same bytes.

    CPU float results depend on the number of threads (reductions split differently), so the
    count comes from ``runtime.threads`` rather than from the machine; torchrun's processes on one
    machine share them (two processes on two cores with two threads each ran 14x slower, spinning
    against each other). ``deterministic=False``
    (``runtime.deterministic``) trades bit-exact reruns for speed on GPUs: cuDNN autotuning and
    TF32 matmuls, which round to 10 mantissa bits, are allowed only then.
    """
    # cuBLAS needs this before the first CUDA call to pick deterministic workspaces.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(max(1, threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    # NumPy's and SciPy's OpenBLAS (the TF-IDF baseline's solver) would use every core of the machine.
    threadpool_limits(limits=threads, user_api="blas")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cuda.matmul.allow_tf32 = not deterministic
    torch.backends.cudnn.allow_tf32 = not deterministic


def world_size() -> int:
    """How many processes train together: ``torchrun --nproc_per_node=N`` sets WORLD_SIZE (1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of a torchrun launch, or a plain ``python`` run: the only process that writes outputs."""
    return int(os.environ.get("RANK", "0")) == 0


def wait_for_all_processes() -> None:
    """Under torchrun, block until every process gets here (a no-op in a plain run).

    Each rank saves its own RNG state into a checkpoint, so rank 0 may remove the checkpoints only
    once every rank has finished training; otherwise a slower rank recreates the directory.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
