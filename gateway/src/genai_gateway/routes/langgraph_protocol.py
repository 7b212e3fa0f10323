"""HTTP shapes of the LangGraph Agent Server API (the request bodies ``langgraph-sdk`` sends).

Unknown keys are ignored rather than rejected: SDK versions add fields, and a field we do not act on
must not break a client that sends it by default. Fields and values whose meaning we do not offer are in
the schema only as null (or not at all), so setting one is a 400 naming it, never a 5xx. Known fields are strict JSON types
(``"limit": 10.0`` is not an integer), and every integer is bounded by its proto field and
``genai_core.limits.AGENT``, generously for what the SDK sends (``limit=10``, ``offset=0``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from genai_core.limits import AGENT
from pydantic import BaseModel, ConfigDict, Field

from genai_gateway.routes._bounds import UINT32_MAX

# Served stream modes; LangGraph's events, debug, checkpoints, tools and lifecycle are not.
StreamModeName = Literal["values", "updates", "messages-tuple", "messages", "tasks", "custom"]
NOT_SERVED = "not served by this agent server; leave it out or send null"


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


PageLimit = Annotated[int, Field(ge=1, le=AGENT.max_page_size, description="items per page")]
Offset = Annotated[int, Field(ge=0, le=UINT32_MAX, description="items to skip")]


class Config(_Body):
    """LangGraph's run config: what this server acts on (other keys, such as tags, are ignored)."""

    recursion_limit: int | None = Field(None, ge=1, le=AGENT.max_steps,
                                        description="the run's (or assistant's) step limit")
    configurable: dict[str, Any] | None = Field(None, description="keys that name agent spec fields set them")


class AssistantCreate(_Body):
    graph_id: str = Field(description="react, rag or plan_execute")
    assistant_id: str | None = None
    config: Config | None = None
    context: dict[str, Any] | None = Field(None, description="the agent spec: model, system_prompt, tools, ...")
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None
    name: str | None = None
    description: str | None = None


class AssistantUpdate(_Body):
    graph_id: str | None = None
    config: Config | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None


class AssistantSearch(_Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: PageLimit = 10
    offset: Offset = 0
    sort_by: str | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None


class ThreadCreate(_Body):
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None
    supersteps: None = Field(None, description=f"{NOT_SERVED}: create the thread, then update its state")
    ttl: Any = None


class ThreadUpdate(_Body):
    metadata: dict[str, Any] | None = None
    ttl: Any = None


class ThreadSearch(_Body):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = Field(None, max_length=0, description="filtering threads by state values is not "
                                                                          "served: filter by metadata")
    ids: list[str] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: PageLimit = 10
    offset: Offset = 0
    sort_by: str | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None
    extract: dict[str, Any] | None = None


class CheckpointRef(_Body):
    thread_id: str | None = None
    checkpoint_ns: str | None = ""
    checkpoint_id: str | None = None
    checkpoint_map: dict[str, Any] | None = None


class StateCheckpointRequest(_Body):
    checkpoint: CheckpointRef
    subgraphs: bool = False


class StateUpdate(_Body):
    values: dict[str, Any] | list[dict[str, Any]] | None = None
    as_node: str | None = None
    checkpoint_id: str | None = None
    checkpoint: CheckpointRef | None = None


class HistoryRequest(_Body):
    limit: PageLimit = 10
    before: CheckpointRef | str | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: CheckpointRef | None = None


class Command(_Body):
    resume: Any = None
    update: dict[str, Any] | None = None
    goto: str | list[str] | dict[str, Any] | None = None


class RunCreate(_Body):
    assistant_id: str = Field(description="an assistant's id or name, or a graph id")
    input: dict[str, Any] | None = None
    command: Command | None = None
    stream_mode: StreamModeName | list[StreamModeName] | None = None
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    metadata: dict[str, Any] | None = None
    config: Config | None = None
    context: dict[str, Any] | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    multitask_strategy: Literal["reject", "interrupt", "enqueue"] | None = Field(
        None, description="rollback is not served: the checkpointers cannot delete one run's checkpoints")
    if_not_exists: Literal["create", "reject"] | None = None
    on_disconnect: Literal["cancel", "continue"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    webhook: None = Field(None, description=NOT_SERVED)
    after_seconds: None = Field(None, description=NOT_SERVED)
    durability: Literal["sync", "async", "exit"] | None = None
    feedback_keys: list[str] | None = None
