"""Owners' teams on SQLite: one row per membership in `owner_team_members`.

As in `tm_adapters.team_store`, a membership is added and removed whole; its
key is the tenant, the owner and the member, so adding one twice fails.
"""

from __future__ import annotations

import sqlite3

from tm_adapters import sqlite


class SqliteTeamStore:
    def __init__(self, db: sqlite.Database) -> None:
        self.db = db

    async def prepare(self) -> None:
        await self.db.prepare()

    async def members(self, tenant_id: str, owner_id: str) -> list[str]:
        def select(connection: sqlite3.Connection) -> list[str]:
            rows = connection.execute(
                """SELECT member_id FROM owner_team_members
                   WHERE tenant_id = ? AND owner_id = ? ORDER BY member_id""",
                (tenant_id, owner_id),
            )
            return [member for (member,) in rows]

        return await self.db.read(select)

    async def is_member(self, tenant_id: str, owner_id: str, member_id: str) -> bool:
        def select(connection: sqlite3.Connection) -> bool:
            row = connection.execute(
                """SELECT 1 FROM owner_team_members
                   WHERE tenant_id = ? AND owner_id = ? AND member_id = ?""",
                (tenant_id, owner_id, member_id),
            ).fetchone()
            return row is not None

        return await self.db.read(select)

    async def add(self, tenant_id: str, owner_id: str, member_id: str) -> bool:
        def insert(connection: sqlite3.Connection) -> bool:
            added = connection.execute(
                """INSERT INTO owner_team_members (tenant_id, owner_id, member_id)
                   VALUES (?, ?, ?) ON CONFLICT DO NOTHING""",
                (tenant_id, owner_id, member_id),
            )
            return added.rowcount == 1

        return await self.db.write(insert)

    async def remove(self, tenant_id: str, owner_id: str, member_id: str) -> bool:
        def delete(connection: sqlite3.Connection) -> bool:
            removed = connection.execute(
                """DELETE FROM owner_team_members
                   WHERE tenant_id = ? AND owner_id = ? AND member_id = ?""",
                (tenant_id, owner_id, member_id),
            )
            return removed.rowcount == 1

        return await self.db.write(delete)
