"""The CPU thread setup the JAX comparison scripts share. XLA reads its thread counts when
it starts, so `use_threads` must run before the first `import jax`."""

import os


def use_threads(threads):
    """Runs XLA on the CPU with `threads` intra-op threads (Eigen's pool off for one)."""
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
        + f" intra_op_parallelism_threads={threads}"
    )
    os.environ["JAX_PLATFORMS"] = "cpu"
