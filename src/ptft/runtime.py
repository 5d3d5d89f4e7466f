"""One switch for seeds, threads and deterministic kernels, called at the start of every stage."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def setup_runtime(seed: int, threads: int) -> None:
    """Seed every generator and fix the thread count, so a rerun gives the same bytes.

    CPU float results depend on the number of threads (reductions split differently), so the
    count comes from ``runtime.threads`` rather than from the machine.
    """
    # cuBLAS needs this before the first CUDA call to pick deterministic workspaces.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
