"""The todo service: the owner's tasks, grouped in named lists."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from orchard_envs.tasks.claw.services.base import Body, Collection, Service, State, changes, normal_date

router = APIRouter()
DEFAULT_LIST = "inbox"
Priority = Literal["low", "normal", "high"]


class CreateBody(Body):
    """A new todo."""
    title: str = Field(min_length=1)
    due: str | None = None
    priority: Priority = "normal"
    list: str = Field(DEFAULT_LIST, min_length=1)


class UpdateBody(Body):
    """Fields to change on a todo; None leaves a field as it is."""
    title: str | None = Field(None, min_length=1)
    due: str | None = None
    done: bool | None = None
    priority: Priority | None = None


@router.get("/tasks")
async def list_tasks(
    state: State, list_name: Annotated[str | None, Query(alias="list")] = None, done: bool | None = None
) -> list[dict[str, Any]]:
    """Todos, optionally of one list and by done-ness."""
    return [
        t for t in state.records("tasks")
        if (list_name is None or str(t.get("list") or "").casefold() == list_name.casefold())
        and (done is None or bool(t.get("done")) == done)
    ]


@router.post("/tasks", status_code=201)
async def create(request: CreateBody, state: State) -> dict[str, Any]:
    """Create a todo; a due date must be a valid date."""
    due = normal_date("due", request.due) if request.due else None
    return state.insert("tasks", {
        "title": request.title, "due": due, "done": False, "priority": request.priority, "list": request.list,
    })


@router.patch("/tasks/{id}")
async def update(id: str, request: UpdateBody, state: State) -> dict[str, Any]:
    """Change a todo."""
    task = state.get("tasks", id)
    given = changes(request, "title, due, done, priority")
    if "due" in given:
        given["due"] = normal_date("due", given["due"])
    task.update(given)
    return task


@router.delete("/tasks/{id}")
async def delete(id: str, state: State) -> dict[str, Any]:
    """Delete a todo; 404 when there is none."""
    state.delete("tasks", id)
    return {"deleted": id}


TASKS_FIELDS = ("id", "title", "due", "done", "priority", "list")
SERVICE = Service("todo", {"tasks": Collection("t", "task", TASKS_FIELDS)}, router)
