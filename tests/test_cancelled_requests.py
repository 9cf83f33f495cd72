"""A build request cancelled while pending no longer shows as pending to Buildbot's UI, on both backends.

Buildbot's UI lists pending requests with ``buildrequests?claimed=false`` (the Pending
Buildrequests, builder and project pages); a request cancelled before any master claimed it
is complete, and must not be listed there forever.
"""

from __future__ import annotations

import pytest_twisted
from apiclient import Api
from test_requests_changes import SS1, api, data, rpc  # noqa: F401 (fixtures)

from master.results import CANCELLED


@pytest_twisted.ensureDeferred
async def test_a_cancelled_request_is_not_pending(api: Api) -> None:  # noqa: F811
    store = api.data
    _, brids = await store.updates.add_buildset(scheduler="s", sourcestamps=[SS1], reason="r", properties={},
                                               builderids=[1, 2, 3])
    waiting, cancelled, taken = brids[1], brids[2], brids[3]
    assert await store.updates.claim_buildrequests([taken], 1) == [taken]
    code, body = await api.rpc(f"/api/v2/buildrequests/{cancelled}", rpc("cancel", reason="not needed"))
    assert code == 200, body

    # the UI's queries: the pending list, a builder's pending list, and the count in the menu
    code, body, _ = await api.get("/api/v2/buildrequests?claimed=false&order=-priority&order=-submitted_at")
    assert [r["buildrequestid"] for r in body["buildrequests"]] == [waiting] and body["meta"]["total"] == 1
    code, body, _ = await api.get("/api/v2/builders/2/buildrequests?claimed=false")
    assert body["buildrequests"] == [] and body["meta"]["total"] == 0
    code, body, _ = await api.get(f"/api/v2/buildrequests/{cancelled}")
    request = body["buildrequests"][0]
    assert request["claimed"] is True and request["complete"] is True and request["results"] == CANCELLED
    assert request["claimed_by_masterid"] is None  # no master ever had it
    # claimed=true lists what no longer waits: the claimed one and the cancelled one
    code, body, _ = await api.get("/api/v2/buildrequests?claimed=true&field=buildrequestid")
    assert sorted(r["buildrequestid"] for r in body["buildrequests"]) == sorted([cancelled, taken])
    code, body, _ = await api.get("/api/v2/buildrequests?claimed__ne=true&field=buildrequestid")
    assert [r["buildrequestid"] for r in body["buildrequests"]] == [waiting]
    # the engine's queue agrees: only the waiting request can be claimed
    assert await store.updates.claim_buildrequests([waiting, cancelled], 1) == [waiting]
