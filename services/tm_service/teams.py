"""Owners and their teams: members, and the tasks an owner assigns them.

An owner (role `owner`) names the members of their team within the tenant;
membership is data, added and removed through the API. A task an owner
assigns is the member's task, in the member's own views, with the owner
recorded as `assignedBy`: the member can complete it, only the owner can
change, reassign or delete it, and the owner sees the tasks they assigned, per
member or for the whole team, with their completion. An owner never sees a
member's own tasks.
"""

from __future__ import annotations

from typing import Any

from tm_domain import storage, tasks
from tm_domain.errors import InvalidInput, NotFound, Problem
from tm_service.tasks import TaskService

TEAM_MAX = 500


class TeamService:
    def __init__(self, teams: storage.TeamStore, tasks: TaskService) -> None:
        self.teams = teams
        self.tasks = tasks

    async def members(self, owner: storage.User) -> list[str]:
        return await self.teams.members(owner.tenant_id, owner.user_id)

    async def add_member(self, owner: storage.User, member_id: str) -> bool:
        """Add a member; False when already one."""
        if member_id == owner.user_id:
            raise InvalidInput(
                [Problem("memberId", "an owner is not their own member")]
            )
        if await self.teams.is_member(owner.tenant_id, owner.user_id, member_id):
            return False
        if len(await self.members(owner)) >= TEAM_MAX:
            raise InvalidInput(
                [Problem("memberId", f"a team has at most {TEAM_MAX} members")]
            )
        return await self.teams.add(owner.tenant_id, owner.user_id, member_id)

    async def remove_member(self, owner: storage.User, member_id: str) -> None:
        """Remove a member; the tasks assigned to them stay theirs and the
        owner's to manage."""
        if not await self.teams.remove(owner.tenant_id, owner.user_id, member_id):
            raise NotFound(member_id, message="no such member in your team")

    async def assign(
        self, owner: storage.User, member_id: str, draft: tasks.TaskDraft
    ) -> storage.Task:
        await self._require_member(owner, member_id)
        member = storage.User(owner.tenant_id, member_id)
        return await self.tasks.create(member, draft, assigned_by=owner.user_id)

    async def get(self, owner: storage.User, task_id: str) -> storage.Task:
        task = await self.tasks.store.get_assigned(
            owner.tenant_id, owner.user_id, task_id
        )
        if task is None:
            raise NotFound(task_id)
        return task

    async def update(
        self,
        owner: storage.User,
        task_id: str,
        draft: tasks.TaskDraft,
        *,
        version: int,
        assignee: str | None,
    ) -> storage.Task:
        current = await self.get(owner, task_id)
        reassign_to = None
        if assignee is not None and assignee != current["userId"]:
            await self._require_member(owner, assignee)
            reassign_to = assignee
        holder = storage.User(owner.tenant_id, current["userId"])
        return await self.tasks.update(
            holder,
            task_id,
            draft,
            version=version,
            as_owner=owner.user_id,
            reassign_to=reassign_to,
        )

    async def delete(self, owner: storage.User, task_id: str) -> None:
        current = await self.get(owner, task_id)
        holder = storage.User(owner.tenant_id, current["userId"])
        await self.tasks.delete(holder, task_id, as_owner=owner.user_id)

    async def view(
        self, owner: storage.User, dates: tasks.DateRange, *, member: str | None
    ) -> dict[str, Any]:
        """The tasks the owner assigned in a range of days, with how many of
        them each member has completed."""
        if member is not None:
            await self._require_member(owner, member, field="member")
        found = await self.tasks.store.assigned_between(
            owner.tenant_id,
            owner.user_id,
            dates.first_text,
            dates.last_text,
            member=member,
            limit=self.tasks.view_limit,
        )
        progress: dict[str, dict[str, int]] = {}
        for task in found:
            counts = progress.setdefault(task["userId"], {"total": 0, "completed": 0})
            counts["total"] += 1
            counts["completed"] += 1 if task.get("completed") else 0
        return {"tasks": found, "progress": progress}

    async def _require_member(
        self, owner: storage.User, member_id: str, *, field: str = "assigneeId"
    ) -> None:
        if not await self.teams.is_member(owner.tenant_id, owner.user_id, member_id):
            raise InvalidInput([Problem(field, "is not a member of your team")])
