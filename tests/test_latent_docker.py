"""Latent workers in real Docker containers (a real dockerd, containers on the host network).

The worker image is built once by contrib/docker/build-image (cached by a hash of its inputs).
Every master here is a real ``ci-master`` daemon on 127.0.0.1; its containers' workers connect
to it over the host network.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from dockerutil import MARKER, Master, containers
from waiting import wait_until

pytestmark = pytest.mark.slow  # real masters and Docker containers

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


def _one_worker(name: str, args: str = "") -> str:
    """A master.cfg body: latent worker *name* (more DockerLatentWorker arguments in *args*) and its builder."""
    return (
        "config = MasterConfig(\n"
        '    www={{"interface": "127.0.0.1", "port": {port}}},\n'
        f'    workers=[DockerLatentWorker("{name}", "pw", image="{{image}}"{args})],\n'
        f'    builders=[BuilderConfig(name="{name}", workernames=["{name}"], steps=[SHOW])],\n'
        f'    schedulers=[ForceScheduler(name="force", builderNames=["{name}"])],\n'
        ")\n"
    )


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


FAILURES = """
config = MasterConfig(
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[
        DockerLatentWorker("missing", "pw", image="ci-master-no-such-image:0"),
        DockerLatentWorker("quits", "pw", image="{image}",
                           hostconfig={{"entrypoint": ["sh", "-c", "echo boom from the entry point; exit 3"]}}),
        DockerLatentWorker("silent", "pw", image="{image}", missing_timeout=3,
                           hostconfig={{"entrypoint": ["sleep", "600"]}}),
        DockerLatentWorker("good", "pw", image="{image}"),
    ],
    builders=[BuilderConfig(name=n, workernames=[n], steps=[SHOW]) for n in ("missing", "quits", "silent", "good")],
    schedulers=[ForceScheduler(name="force", builderNames=["missing", "quits", "silent", "good"])],
)
"""


def _build_of(master: Master, brid: int) -> dict:
    def done() -> dict | None:
        request = master.get(f"/api/v2/buildrequests/{brid}?field=complete")["buildrequests"][0]
        return request if request["complete"] else None

    wait_until(done, timeout=90)
    builds = master.get(f"/api/v2/buildrequests/{brid}/builds?field=buildid&field=results&field=state_string")
    assert len(builds["builds"]) == 1, builds  # no retry: the request ended with its one build
    return builds["builds"][0]


def test_failing_containers_end_the_build_exception_with_the_reason(tmp_path: Path) -> None:
    master = Master(tmp_path, FAILURES)
    master.start()
    try:
        name = master.name
        expected = {
            "missing": ["Docker image 'ci-master-no-such-image:0' not found"],
            "quits": ["exited with code 3 before its worker connected", "boom from the entry point"],
            "silent": ["did not connect within 3s (missing_timeout)"],
        }
        for builder, reasons in expected.items():
            brid = master.force(master.builder_id(builder))
            if builder == "silent":  # 3 s of waiting for its worker: the build says so meanwhile
                states = f"/api/v2/buildrequests/{brid}/builds?field=state_string"
                wait_until(lambda q=states: [b["state_string"] for b in master.get(q)["builds"]]
                           == ["preparing worker"])
            build = _build_of(master, brid)
            assert build["results"] == EXCEPTION, (builder, build)
            text = master.log_text(build["buildid"], "worker_preparation")
            for reason in reasons:
                assert reason in text, (builder, text)
            steps = master.get(f"/api/v2/builds/{build['buildid']}/steps?field=name")["steps"]
            assert [s["name"] for s in steps] == ["worker_preparation"]  # SHOW never ran
        # the next build works, and a failed worker is not stuck: it fails again the same way
        assert _build_of(master, master.force(master.builder_id("good")))["results"] == SUCCESS
        again = _build_of(master, master.force(master.builder_id("quits")))
        assert again["results"] == EXCEPTION
        assert "boom from the entry point" in master.log_text(again["buildid"], "worker_preparation")
        wait_until(lambda: containers(name) == [], timeout=60)
    finally:
        master.stop()


KILL = """
config = MasterConfig(
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[DockerLatentWorker(f"k{{n}}", "pw", image="{image}") for n in range(2)],
    builders=[BuilderConfig(name="slow", workernames=["k0", "k1"], steps=[
        ShellCommand(name="sleep", command=["sleep", "4"]), SHOW])],
    schedulers=[ForceScheduler(name="force", builderNames=["slow"])],
)
"""


def test_a_restarted_master_removes_the_containers_a_killed_one_left(tmp_path: Path) -> None:
    master = Master(tmp_path, KILL)
    master.start()
    try:
        name = master.name
        builderid = master.builder_id("slow")
        brids = [master.force(builderid), master.force(builderid)]

        def both_sleeping() -> bool:
            builds = master.get("/api/v2/builds?complete=false&field=buildid")["builds"]
            steps = [s for b in builds for s in master.get(
                f"/api/v2/builds/{b['buildid']}/steps?name=sleep&field=started_at&field=complete")["steps"]]
            return len(steps) == 2 and all(s["started_at"] and not s["complete"] for s in steps)

        wait_until(both_sleeping, timeout=60)
        left = containers(name)
        assert len(left) == 2
        master.kill()
        assert sorted(containers(name)) == sorted(left)  # still there: nobody removed them
        master.start()
        assert not set(containers(name)) & set(left)  # removed while the master started
        for brid in brids:
            wait_until(lambda b=brid: master.get(f"/api/v2/buildrequests/{b}?field=complete")["buildrequests"][0]
                       ["complete"], timeout=90)
        for brid in brids:
            request = master.get(f"/api/v2/buildrequests/{brid}?field=results")["buildrequests"][0]
            assert request["results"] == SUCCESS
            builds = master.get(f"/api/v2/buildrequests/{brid}/builds?field=results&order=buildid")["builds"]
            assert [b["results"] for b in builds] == [EXCEPTION, SUCCESS]  # lost with the master, then run again
        wait_until(lambda: containers(name) == [], timeout=60)
    finally:
        master.stop()


def test_requests_wait_while_the_docker_daemon_is_unreachable(tmp_path: Path) -> None:
    socket = tmp_path / "docker.sock"  # no daemon there until the test links the real one
    master = Master(tmp_path, _one_worker("far", f', docker_host="unix://{socket}"'))
    master.start()
    try:
        brid = master.force(master.builder_id("far"))
        worker = "/api/v2/workers/far?field=latent_state"
        wait_until(lambda: master.get(worker)["workers"][0]["latent_state"] == "unreachable", timeout=30)
        time.sleep(6)  # more than a probe interval: still no build, the request waits unclaimed
        assert master.get(f"/api/v2/buildrequests/{brid}/builds?field=buildid")["builds"] == []
        request = master.get(f"/api/v2/buildrequests/{brid}?field=claimed&field=complete")["buildrequests"][0]
        assert (request["claimed"], request["complete"]) == (False, False)
        lines = [line for line in (master.dir / "twistd.log").read_text().splitlines() if "unreachable" in line]
        assert len(lines) == 1, lines  # one line a minute, not one per attempt
        socket.symlink_to("/var/run/docker.sock")  # the daemon comes back
        assert _build_of(master, brid)["results"] == SUCCESS
        assert master.get(worker)["workers"][0]["latent_state"] in ("stopped", "stopping")
    finally:
        master.stop()


def test_a_warm_container_serves_the_next_build_until_the_worker_is_stopped(tmp_path: Path) -> None:
    master = Master(tmp_path, _one_worker("warm", ", build_wait_timeout=120"))
    master.start()
    try:
        name, builderid = master.name, master.builder_id("warm")
        first = _build_of(master, master.force(builderid))
        second = _build_of(master, master.force(builderid))
        ran_in = [CONTAINER_ID.findall(master.log_text(b["buildid"], "show")) for b in (first, second)]
        assert ran_in[0] == ran_in[1] and len(ran_in[0]) == 1  # build_wait_timeout > 0: the same container
        assert containers(name) == ran_in[0]
        worker = master.get("/api/v2/workers/warm?field=workerid&field=latent_state")["workers"][0]
        assert worker["latent_state"] == "running"
        master.call(f"workers/{worker['workerid']}", "stop", {})  # the worker's 'stop' action: leave when idle
        wait_until(lambda: containers(name) == [], timeout=60)
        wait_until(lambda: master.get("/api/v2/workers/warm?field=latent_state")["workers"][0]["latent_state"]
                   == "stopped")
        third = _build_of(master, master.force(builderid))  # a stopped latent worker starts again
        assert third["results"] == SUCCESS
        assert CONTAINER_ID.findall(master.log_text(third["buildid"], "show")) != ran_in[0]
    finally:
        master.stop()


def test_a_build_stopped_while_preparing_its_worker_ends_cancelled(tmp_path: Path) -> None:
    sleeps = ', missing_timeout=120, hostconfig={{"entrypoint": ["sleep", "600"]}}'  # never connects
    master = Master(tmp_path, _one_worker("slow", sleeps))
    master.start()
    try:
        name = master.name
        brid = master.force(master.builder_id("slow"))
        query = f"/api/v2/buildrequests/{brid}/builds?field=buildid&field=state_string"
        build = wait_until(lambda: [b for b in master.get(query)["builds"] if b["state_string"] == "preparing worker"])
        wait_until(lambda: len(containers(name)) == 1)
        master.call(f"builds/{build[0]['buildid']}", "stop", {"reason": "not now"})
        ended = _build_of(master, brid)
        assert ended["results"] == 6  # CANCELLED
        assert "stopped waiting for the worker: not now" in master.log_text(ended["buildid"], "worker_preparation")
        wait_until(lambda: containers(name) == [], timeout=30)  # long before its missing_timeout
    finally:
        master.stop()
