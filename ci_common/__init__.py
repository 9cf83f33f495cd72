"""What the master and the worker both import, so that each ships without the other.

``protocol`` (the messages on the ``/worker`` WebSocket), ``workerconfig`` (the ``worker.cfg``
file: the master writes one for each of its local workers) and ``twistd_process`` (pidfile,
log and start/stop of a program run under twistd).  Standard library only.
"""
