"""Owners' teams on MongoDB: one document per membership in `owner_team_members`.

The `_id` of a membership is its tenant, owner and member joined, so adding
one is an insert that fails for a member already there and removing one is a
delete by `_id`: both atomic on MongoDB and FerretDB alike, with no update to
get wrong.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tm_adapters.task_store import unavailable_on_outage

COLLECTION = "owner_team_members"


def _key(tenant_id: str, owner_id: str, member_id: str) -> str:
    # NB: ids are validated to exclude "/" (see tm_service.auth), so the
    # joined key names one membership only.
    return f"{tenant_id}/{owner_id}/{member_id}"


class MongoTeamStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = db[COLLECTION]

    async def prepare(self) -> None:
        with unavailable_on_outage():
            found = await self.collection.index_information()
            if "tenant_owner" not in found:
                await self.collection.create_indexes(
                    [
                        IndexModel(
                            [("tenantId", ASCENDING), ("ownerId", ASCENDING)],
                            name="tenant_owner",
                        )
                    ]
                )

    async def members(self, tenant_id: str, owner_id: str) -> list[str]:
        with unavailable_on_outage():
            docs = await self.collection.find(
                {"tenantId": tenant_id, "ownerId": owner_id}, {"memberId": 1}
            ).to_list()
        return sorted(str(doc["memberId"]) for doc in docs)

    async def is_member(self, tenant_id: str, owner_id: str, member_id: str) -> bool:
        with unavailable_on_outage():
            doc = await self.collection.find_one(
                {"_id": _key(tenant_id, owner_id, member_id)}
            )
        return doc is not None

    async def add(self, tenant_id: str, owner_id: str, member_id: str) -> bool:
        try:
            with unavailable_on_outage():
                await self.collection.insert_one(
                    {
                        "_id": _key(tenant_id, owner_id, member_id),
                        "tenantId": tenant_id,
                        "ownerId": owner_id,
                        "memberId": member_id,
                    }
                )
        except DuplicateKeyError:
            return False
        return True

    async def remove(self, tenant_id: str, owner_id: str, member_id: str) -> bool:
        with unavailable_on_outage():
            done = await self.collection.delete_one(
                {"_id": _key(tenant_id, owner_id, member_id)}
            )
        return done.deleted_count == 1
