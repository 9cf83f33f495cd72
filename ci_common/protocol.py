"""The worker protocol: JSON text messages over one WebSocket at ``/worker`` on the master's web port.

One port to open and to put behind TLS.  Every message is a JSON object with a ``type``.
Keep-alive is the WebSocket's own ping/pong.  Version 1:

Worker -> master, first message, within ``HELLO_TIMEOUT`` seconds of connecting::

    {"type": "hello", "protocol": 1, "name": "w1", "password": "...",
     "info": {"os": "...", "python": "...", "hostname": "...", ...}, "max_builds": 2,
     "features": ["transfer"]}      # optional: what the worker can do beyond running commands

Master -> worker: ``{"type": "welcome", "workerid": 7}``; or ``{"type": "error", "message": ...}``
followed by a close with code ``CLOSE_BAD_CREDENTIALS`` (unknown name, wrong password: the
worker should not retry quickly), ``CLOSE_DUPLICATE`` (a worker of that name is connected
already) or ``CLOSE_PROTOCOL`` (a malformed message or an unsupported protocol version).

Master -> worker, to run a command::

    {"type": "run", "cmd": "c1", "argv": ["make", "test"]}     # or "shell": "make test && echo ok"
      + "env": {"NAME": "value"}  (added to the worker's environment; a null value removes a variable)
      + "workdir": "build"        (relative to the worker's directory for this builder, made if missing)
      + "builder": "name"         (the builder: the worker runs in <worker dir>/<builder>/<workdir>)
      + "timeout": 1200           (seconds without output before the command is interrupted; null: none)
      + "max_time": null          (seconds in all before it is interrupted; null: none)
      + "shown": "echo <secret:x>" (optional: how the worker's log shows the command; secrets hidden)

Worker -> master while it runs (output is batched: at most ``OUTPUT_CHUNK`` bytes of text per
message, sent at least every ``OUTPUT_INTERVAL`` seconds while there is some; text is decoded
as UTF-8 with replacement; a chunk always ends on a line boundary unless a line is longer
than a chunk)::

    {"type": "output", "cmd": "c1", "stream": "o" | "e", "text": "..."}
    {"type": "exit", "cmd": "c1", "rc": 0, "signal": null | "SIGTERM" | "SIGKILL",
     "interrupted": false, "timed_out": false, "elapsed": 1.25}

``rc`` is null when the process died of a signal; an executable that cannot be started gives
``rc`` -1 and an ``output`` on stream ``e`` saying why.

Master -> worker, to stop a command: ``{"type": "interrupt", "cmd": "c1", "reason": "..."}``:
SIGTERM to the process group, then SIGKILL after ``KILL_GRACE`` seconds; the ``exit`` follows.

A close with ``CLOSE_SHUTDOWN`` means the master is going away or cannot serve the worker now
(a database error, say): the worker retries with its back-off.  Messages larger than the
master's limit (1 MiB) are refused by the WebSocket layer itself with close code 1009.

Master -> worker, to make the worker leave: ``{"type": "shutdown", "graceful": true}``:
graceful lets running commands end first; otherwise they are interrupted.  The worker then
closes with ``CLOSE_NORMAL`` and, if it was asked to, does not reconnect.

File transfers (workers saying ``"features": ["transfer"]`` in their hello).  A transfer has an
id (``"xfer"``) of the master's; its bytes go in ``data`` messages of at most ``TRANSFER_CHUNK``
bytes (base64 in ``data``), numbered by ``seq`` from 0; the receiver ``ack``s each chunk once
it is written, and the sender never has more than ``TRANSFER_WINDOW`` chunks unacknowledged,
so neither side holds more than a window of a file in memory, whatever its size::

    {"type": "data", "xfer": "t1", "seq": 0, "data": "<base64>"}
    {"type": "ack", "xfer": "t1", "seq": 0}
    {"type": "end", "xfer": "t1", "size": 1234, "sha256": "<hex>", "kind": "file" | "dir", "mode": 420}
    {"type": "failed", "xfer": "t1", "message": "..."}   # either side: the transfer is over, unfinished

Master -> worker, to upload (worker to master) a file, or a directory as a tar stream::

    {"type": "upload", "xfer": "t1", "builder": "b", "workdir": "build", "path": "dist/app.tar.gz",
     "kind": "file" | "dir" | "any", "maxsize": null, "compress": null | "gz" | "bz2"}

The worker sends the data, then ``end`` (``kind`` what it sent, ``mode`` the source's permission
bits), or ``failed`` (no such file, bigger than ``maxsize``...).  ``path`` is relative to the
working directory (or absolute).  The master may send ``failed`` to stop an upload.

Master -> worker, to download (master to worker) a file::

    {"type": "download", "xfer": "t2", "builder": "b", "workdir": "build", "path": "conf/app.ini",
     "mode": null | 420}

The master sends the data and ``end``; the worker writes to a temporary name beside the
destination, checks size and sha256, renames it and answers ``{"type": "done", "xfer": "t2"}``
(or ``failed``).  The destination must be inside the worker directory, like a ``workdir``.
"""

from __future__ import annotations

PROTOCOL_VERSION = 1
PATH = b"worker"
HELLO_TIMEOUT = 30.0
OUTPUT_CHUNK = 64 * 1024
OUTPUT_INTERVAL = 0.1
KILL_GRACE = 10.0

CLOSE_NORMAL = 1000
CLOSE_BAD_CREDENTIALS = 4001
CLOSE_DUPLICATE = 4002
CLOSE_PROTOCOL = 4003
CLOSE_SHUTDOWN = 4004

HELLO, WELCOME, ERROR = "hello", "welcome", "error"
RUN, OUTPUT, EXIT, INTERRUPT, SHUTDOWN = "run", "output", "exit", "interrupt", "shutdown"

# file transfers
TRANSFER_FEATURE = "transfer"
TRANSFER_CHUNK = 256 * 1024  # raw bytes per data message: about 350 KB of base64, under the 1 MiB limit
TRANSFER_WINDOW = 8  # unacknowledged chunks a sender may have out: 2 MiB
UPLOAD, DOWNLOAD, DATA, ACK, END, FAILED, DONE = "upload", "download", "data", "ack", "end", "failed", "done"
TRANSFER_MESSAGES = (DATA, ACK, END, FAILED, DONE)
