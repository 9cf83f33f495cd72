"""Lock claims: the slots of MasterLocks and WorkerLocks that builds and steps hold, shared by every master.

A lock of ``maxCount`` N has N slots, a row of ``lock_claims`` for each slot taken.  A counting
access takes one free slot, an exclusive access takes all N at once (so it needs the lock
unused).  The primary key ``(lock, slot)`` makes a claim atomic across masters as the
conditional UPDATE of build requests does: of two transactions inserting the same slot, the
second waits for the first (PostgreSQL) or runs after it (SQLite) and fails on the key, so it
is rolled back whole and its claimer waits.  Several locks are claimed all or none in one
transaction, so two builds never each hold a lock the other waits for.  No REST endpoint:
the waiting build's ``state_string`` names the lock it waits for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from master.data.base import Declaration, Field, ResourceType, update_method
from master.data.resources.common import now
from master.data.types import Integer, NoneOk, String
from master.db import schema
from master.db.interfaces import IntegrityError, ITransaction

t = schema.lock_claims


@dataclass(frozen=True)
class LockRequest:
    """One lock wanted: its key (``master:NAME`` or ``worker:WORKER:NAME``), ``exclusive`` or not, its slots."""

    key: str
    exclusive: bool
    max_count: int


class _Busy(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class LockClaims(ResourceType):
    """The slots of locks held (no endpoints: builds' and steps' state strings show who waits for what)."""

    name = "lock_claim"
    plural = "lock_claims"
    id_field = "owner"

    def declare(self) -> Declaration:
        """Fields of a claim; no endpoint serves them."""
        fields = {
            "owner": Field(String(), t.c.owner, "the acquisition holding the slot"),
            "lock": Field(String(), t.c.lock, "the lock: master:NAME or worker:WORKER:NAME"),
            "slot": Field(Integer(), t.c.slot, "the slot taken"),
            "masterid": Field(Integer(), t.c.masterid, "the master whose build holds it"),
            "buildid": Field(NoneOk(Integer()), t.c.buildid, "the build holding it"),
            "mode": Field(String(), t.c.mode, "exclusive or counting"),
        }
        return t, fields, [], {}

    @update_method
    async def claim_locks(
        self, owner: str, masterid: int, buildid: int | None, wanted: Sequence[LockRequest]
    ) -> str | None:
        """Take every lock of *wanted* for *owner*, or none of them; return None, or the key of a busy lock."""
        claimed_at = now()

        async def work(txn: ITransaction) -> None:
            for request in wanted:
                rows = await txn.fetch_all(sa.select(t.c.slot).where(t.c.lock == request.key))
                taken = {row["slot"] for row in rows}
                if request.exclusive:
                    if taken:
                        raise _Busy(request.key)
                    slots = list(range(max(request.max_count, 1)))
                else:
                    free = [slot for slot in range(max(request.max_count, 1)) if slot not in taken]
                    if not free:
                        raise _Busy(request.key)
                    slots = free[:1]
                mode = "exclusive" if request.exclusive else "counting"
                # one statement: all the slots, or (a slot taken meanwhile) none
                await txn.execute(sa.insert(t).values([
                    {"lock": request.key, "slot": slot, "owner": owner, "masterid": masterid, "buildid": buildid,
                     "mode": mode, "claimed_at": claimed_at} for slot in slots
                ]))

        for attempt in range(3):
            try:
                await self.data.storage.transaction(work)
            except _Busy as busy:
                return busy.key
            except IntegrityError:
                # another master took a slot between our read and our insert: read again (another may be free)
                if attempt == 2:
                    return ", ".join(request.key for request in wanted)
            else:
                return None
        return None  # not reached

    @update_method
    async def release_locks(self, owner: str) -> int:
        """Let go of every slot *owner* holds; return how many."""
        return await self.data.storage.execute(sa.delete(t).where(t.c.owner == owner))

    @update_method
    async def release_master_locks(self, masterid: int) -> int:
        """Let go of every slot the builds of master *masterid* hold (it stopped, or starts afresh)."""
        return await self.data.storage.execute(sa.delete(t).where(t.c.masterid == masterid))

    @update_method
    async def release_build_locks(self, buildid: int) -> int:
        """Let go of every slot build *buildid* and its steps hold (the build was lost)."""
        return await self.data.storage.execute(sa.delete(t).where(t.c.buildid == buildid))
