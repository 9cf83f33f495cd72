"""``DockerLatentWorker``: a latent worker whose instances are Docker containers.

In master.cfg::

    from master.engine.docker import DockerLatentWorker
    workers = [DockerLatentWorker("d1", "secret", image="ci-master-worker:latest")]

The container is created from ``image`` (never pulled: build it with contrib/docker/build-image)
and its entry point runs ``ci-worker`` with the master's URL, the worker's name and password
in its environment (see :class:`master.engine.latent.LaunchContext`).  The Docker Engine API
is used through the ``docker`` library (``pip install 'ci-master[docker]'``), each call in a
thread of the reactor's pool, so the reactor never blocks on the daemon.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping
from typing import Any, cast

from twisted.internet import reactor, threads
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from master.engine.config import Configured
from master.engine.latent import ILatentWorker, LatentHostUnreachable, LatentWorkerFailed, LaunchContext, instance_name

API_TIMEOUT = 60  # seconds one call to the daemon may take
LOG_LINES = 50  # of a container that ended before its worker connected, in the build's log
POOL_THREADS = 4  # calls to Docker daemons at once, in a pool of their own: a slow daemon cannot
# hold the reactor's pool, which checks workers' passwords

_pool: list[ThreadPool] = []


def _thread_pool() -> ThreadPool:
    if not _pool:
        pool = ThreadPool(minthreads=0, maxthreads=POOL_THREADS, name="docker")
        pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
        _pool.append(pool)
    return _pool[0]


def _docker() -> Any:
    try:
        import docker
    except ImportError:
        raise LatentWorkerFailed(
            "the 'docker' Python library is not installed on the master (pip install 'ci-master[docker]')"
        ) from None
    return docker


@implementer(ILatentWorker)
class DockerLatentWorker(Configured):
    """A worker run in a Docker container that the master creates for builds and removes when idle."""

    def __init__(
        self,
        name: str,
        password: str,
        image: str,
        docker_host: str = "unix:///var/run/docker.sock",
        volumes: list[str] | None = None,
        environment: Mapping[str, str] | None = None,
        network_mode: str = "host",
        build_wait_timeout: float = 0,
        max_builds: int = 1,
        hostconfig: Mapping[str, Any] | None = None,
        missing_timeout: float = 300,
    ) -> None:
        for key, value in (("name", name), ("password", password), ("image", image), ("docker_host", docker_host),
                           ("network_mode", network_mode)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"DockerLatentWorker {key}: expected a non-empty string, got {value!r}")
        if not isinstance(volumes or [], list) or not all(isinstance(v, str) for v in volumes or []):
            raise ValueError(f"DockerLatentWorker volumes: expected a list of 'host:container[:ro]', got {volumes!r}")
        if not isinstance(environment or {}, Mapping):
            raise ValueError(f"DockerLatentWorker environment: expected a dict, got {environment!r}")
        if not isinstance(hostconfig or {}, Mapping):
            raise ValueError(f"DockerLatentWorker hostconfig: expected a dict, got {hostconfig!r}")
        for key, seconds in (("build_wait_timeout", build_wait_timeout), ("missing_timeout", missing_timeout)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise ValueError(f"DockerLatentWorker {key}: expected a number of seconds >= 0, got {seconds!r}")
        if isinstance(max_builds, bool) or not isinstance(max_builds, int) or max_builds < 1:
            raise ValueError(f"DockerLatentWorker max_builds: expected an integer >= 1, got {max_builds!r}")
        try:
            import docker  # noqa: F401 (here, so that master.cfg says what is missing)
        except ImportError:
            raise ValueError("DockerLatentWorker needs the 'docker' Python library:"
                             " pip install 'ci-master[docker]'") from None
        self.name = name
        self.password = password
        self.image = image
        self.docker_host = docker_host
        self.volumes = list(volumes or [])
        self.environment = {str(k): str(v) for k, v in (environment or {}).items()}
        self.network_mode = network_mode
        self.build_wait_timeout = build_wait_timeout
        self.max_builds = max_builds
        self.hostconfig = dict(hostconfig or {})
        self.missing_timeout = missing_timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DockerLatentWorker({self.name!r}, image={self.image!r}, docker_host={self.docker_host!r})"

    # -- ILatentWorker ------------------------------------------------------------------------

    def describe(self) -> str:
        """What starting an instance does, for the build's log."""
        return f"docker container of image {self.image} on {self.docker_host} (network {self.network_mode})"

    def host_key(self) -> str:
        """The daemon's address."""
        return self.docker_host

    def start_instance(self, context: LaunchContext) -> Any:
        """Create and start a container; its id (Deferred)."""
        return self._call(self._start, context)

    def check_instance(self, instance_id: str) -> Any:
        """None while the container runs; how it ended and its last log lines once it has (Deferred)."""
        return self._call(self._check, instance_id)

    def stop_instance(self, instance_id: str) -> Any:
        """Stop and remove the container (Deferred)."""
        return self._call(self._remove, instance_id)

    def remove_leftovers(self, labels: dict[str, str]) -> Any:
        """Remove the containers carrying *labels*, running or not; their ids (Deferred)."""
        return self._call(self._remove_labelled, labels)

    # -- in a thread ----------------------------------------------------------------------------

    def _call(self, function: Any, *args: Any) -> Any:
        # Twisted types the global reactor as its common base only; the real one runs threads
        return threads.deferToThreadPool(cast(IReactorFromThreads, reactor), _thread_pool(), self._guarded, function,
                                         *args)

    def _guarded(self, function: Any, *args: Any) -> Any:
        docker = _docker()
        try:
            return function(self._docker_client(docker), *args)
        except docker.errors.DockerException as e:
            if _unreachable(e):
                raise LatentHostUnreachable(f"Docker daemon unreachable: {e}") from None
            raise

    def _docker_client(self, docker: Any) -> Any:
        with self._lock:
            if self._client is None:
                self._client = docker.DockerClient(base_url=self.docker_host, timeout=API_TIMEOUT, version="auto")
            return self._client

    def _start(self, client: Any, context: LaunchContext) -> str:
        docker = _docker()
        # the site's environment last: with a network_mode other than host, CI_MASTER_URL set there
        # names the master's address as the container reaches it
        environment = {**context.environment, **self.environment}
        # init: Docker's tini as PID 1 reaps the processes a build leaves orphaned
        options = {"init": True, **self.hostconfig}
        try:
            container = client.containers.create(
                self.image, detach=True, name=instance_name(context.name, secrets.token_hex(4)),
                environment=environment, labels=context.labels, network_mode=self.network_mode,
                volumes=self.volumes or None, **options,
            )
        except docker.errors.ImageNotFound as e:
            raise LatentWorkerFailed(f"Docker image {self.image!r} not found on {self.docker_host}: {_explain(e)}"
                                     " (build it, e.g. with contrib/docker/build-image)") from None
        except docker.errors.APIError as e:
            if _unreachable(e):
                raise
            raise LatentWorkerFailed(f"Docker could not create a container of {self.image!r}: {_explain(e)}") from None
        except TypeError as e:  # a hostconfig key the library does not know
            raise LatentWorkerFailed(f"DockerLatentWorker {self.name}: bad hostconfig: {e}") from None
        try:
            container.start()
        except docker.errors.APIError as e:
            _remove_quietly(container)
            raise LatentWorkerFailed(f"Docker could not start container {container.id[:12]}: {_explain(e)}") from None
        return container.id

    def _check(self, client: Any, instance_id: str) -> str | None:
        docker = _docker()
        try:
            container = client.containers.get(instance_id)
        except docker.errors.NotFound:
            return f"container {instance_id[:12]} disappeared before its worker connected"
        state = container.attrs.get("State", {})
        if state.get("Running") or state.get("Status") in ("created", "restarting"):
            return None
        lines = container.logs(tail=LOG_LINES).decode(errors="replace").rstrip("\n")
        return (f"container {instance_id[:12]} exited with code {state.get('ExitCode')} before its worker connected"
                + (f"; {state['Error']}" if state.get("Error") else "")
                + f"\nits last {LOG_LINES} log lines:\n{lines or '(none)'}")

    def _remove(self, client: Any, instance_id: str) -> None:
        docker = _docker()
        try:
            container = client.containers.get(instance_id)
        except docker.errors.NotFound:
            return
        _remove_quietly(container)

    def _remove_labelled(self, client: Any, labels: dict[str, str]) -> list[str]:
        if not labels:
            raise ValueError("removing leftovers needs labels: none would match every container")
        filters = {"label": [f"{key}={value}" for key, value in sorted(labels.items())]}
        removed = []
        for container in client.containers.list(all=True, filters=filters):
            _remove_quietly(container)
            removed.append(container.id)
        return removed


def _remove_quietly(container: Any) -> None:
    docker = _docker()
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as e:
        if "already in progress" not in str(e):
            raise


def _explain(error: Any) -> str:
    return str(getattr(error, "explanation", None) or error)


def _unreachable(error: Exception) -> bool:
    """Whether *error* says the daemon cannot be reached (rather than refusing what was asked)."""
    import requests

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
        if "Error while fetching server API version" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False
