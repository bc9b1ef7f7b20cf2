"""One process's thread budget: torch's two pools, Dask's local pool and the OpenMP and
BLAS runtimes, all sized from one number (``salpipe --threads N``; a Snakemake rule
passes its ``threads``), so that two jobs sharing a machine never start more threads
than the cores the scheduler gave them.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

# Read once by the OpenMP and BLAS runtimes, when their library loads (Snakemake sets
# them, and a few more, to a shell job's threads).
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity mask where the OS has one (what a
    SLURM allocation or ``taskset`` leaves it), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity masks (macOS, Windows)
        return os.cpu_count() or 1


def set_threads(n: int | None = None) -> int:
    """Size every thread pool of this process to ``n`` threads.

    Call it first, before torch runs any parallel work: torch sizes its inter-op pool
    only once, before that pool is first used (a later call leaves the pool as it is
    and logs its size at debug level). Sets

    - torch's intra-op threads (:func:`torch.set_num_threads`), the threads of one
      convolution or matrix product;
    - torch's inter-op threads (:func:`torch.set_num_interop_threads`);
    - the size of Dask's local thread pool (``dask.config`` ``num_workers``, read by
      the threaded scheduler of ``precompute-saliency`` unless it is given
      ``--workers``; that stage then gives each worker ``cores // workers`` torch
      threads);
    - ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS``, only while
      torch is not loaded yet (afterwards the runtimes have read them, and setting them
      would only leak into child processes): an explicit ``n`` replaces them, the
      default leaves a value already set (a user's or Snakemake's) as it is.

    Args:
        n: threads, at least 1; None (the default): :func:`available_cores`, every core
            this process may run on.

    Returns:
        The number of threads set.

    Raises:
        ValueError: ``n`` is smaller than 1.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"threads must be a whole number >= 1, not {n!r}")
    threads = n if n is not None else available_cores()
    if "torch" not in sys.modules:
        for var in THREAD_ENV_VARS:
            if n is not None:
                os.environ[var] = str(threads)
            else:
                os.environ.setdefault(var, str(threads))
    import dask
    import torch

    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already sized in this process (an earlier call, or work ran)
        log.debug("torch inter-op threads already fixed at %d (asked %d)",
                  torch.get_num_interop_threads(), threads)
    torch.set_num_threads(threads)
    dask.config.set(num_workers=threads)
    log.debug("threads: %d (torch intra-op %d, inter-op %d; dask num_workers %d)",
              threads, torch.get_num_threads(), torch.get_num_interop_threads(), threads)
    return threads
