"""ci-master: a continuous-integration master daemon on Twisted."""

__version__ = "0.1.0"
