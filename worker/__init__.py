"""ci-worker: runs the commands a ci-master sends it over the worker protocol (``ci_common.protocol``)."""

__version__ = "0.1.0"
