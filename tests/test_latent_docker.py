"""Latent workers in real Docker containers (a real dockerd, containers on the host network).

The worker image is built once by contrib/docker/build-image (cached by a hash of its inputs).
Every master here is a real ``ci-master`` daemon on 127.0.0.1; its containers' workers connect
to it over the host network.
"""

from __future__ import annotations

import re
from pathlib import Path

from dockerutil import MARKER, Master, containers
from test_end_to_end import wait_until

SUCCESS, EXCEPTION = 0, 4
CONTAINER_ID = re.compile(r"containers/([0-9a-f]{64})")

TWENTY = """
names = [f"b{{n}}" for n in range(4)]
config = MasterConfig(
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[DockerLatentWorker(f"d{{n}}", f"pw{{n}}", image="{image}", missing_timeout=60) for n in range(3)],
    max_latent_workers=3,
    builders=[BuilderConfig(name=name, workernames=["d0", "d1", "d2"], steps=[SHOW]) for name in names],
    schedulers=[ForceScheduler(name="force", builderNames=names)],
)
"""


def _complete(master: Master, count: int) -> bool:
    done = master.get("/api/v2/buildrequests?complete=true&field=buildrequestid&limit=1")
    return done["meta"]["total"] == count


def test_twenty_builds_over_three_docker_workers(tmp_path: Path) -> None:
    assert not Path(MARKER).exists()  # the marker tells the image from the host
    master = Master(tmp_path, TWENTY)
    master.start()
    try:
        name = master.name
        ids = [master.builder_id(f"b{n}") for n in range(4)]
        for n in range(20):
            master.force(ids[n % 4])
        wait_until(lambda: _complete(master, 20), timeout=240)
        builds = master.get("/api/v2/builds?field=buildid&field=results&field=workerid&limit=100")["builds"]
        assert len(builds) == 20
        assert {b["results"] for b in builds} == {SUCCESS}
        seen = set()
        for build in builds:
            text = master.log_text(build["buildid"], "show")
            assert "ci-master worker image" in text
            found = CONTAINER_ID.findall(text)
            assert len(found) == 1, text
            seen.add(found[0])
            preparation = master.log_text(build["buildid"], "worker_preparation")
            assert found[0][:12] in preparation  # the build ran in the container its preparation started
        assert len(seen) == 20  # build_wait_timeout=0: a fresh container for each build
        assert len({b["workerid"] for b in builds}) == 3
        wait_until(lambda: containers(name) == [], timeout=60)  # every container removed
    finally:
        master.stop()
