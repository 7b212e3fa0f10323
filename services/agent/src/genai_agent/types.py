"""Domain values of the agent service: assistants, threads, runs, commands and run events.

Conversation messages are LangChain's (``langchain_core.messages``), because that is what LangGraph keeps
in a graph's state and checkpoints; everything else here is a plain frozen dataclass or enum.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from langchain_core.messages import BaseMessage

DEFAULT_TENANT = "default"


class RunStatus(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    INTERRUPTED = "interrupted"  # stopped at an interrupt that waits for a human
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in (RunStatus.PENDING, RunStatus.RUNNING)


class ThreadStatus(enum.Enum):
    IDLE = "idle"
    BUSY = "busy"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class MultitaskStrategy(enum.Enum):
    REJECT = "reject"
    ENQUEUE = "enqueue"
    INTERRUPT = "interrupt"
    ROLLBACK = "rollback"


class StreamMode(enum.Enum):
    """The kinds of run events, named as LangGraph's stream modes."""

    VALUES = "values"
    UPDATES = "updates"
    MESSAGES = "messages"
    TASKS = "tasks"
    TOOLS = "tools"
    CUSTOM = "custom"


class ModelProvider(enum.Enum):
    INFERENCE = "inference"
    OPENAI = "openai"


class Grader(enum.Enum):
    MODEL = "model"
    SCORE = "score"


class IfExists(enum.Enum):
    RAISE = "raise"
    DO_NOTHING = "do_nothing"


class OnDisconnect(enum.Enum):
    CANCEL = "cancel"
    CONTINUE = "continue"


@dataclass(frozen=True)
class ModelSpec:
    """A chat model: ``provider`` says where it runs, ``name`` which model (empty: the service default)."""

    provider: ModelProvider = ModelProvider.INFERENCE
    name: str = ""
    base_url: str = ""
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class AgentSpec:
    """What an assistant's graph runs with (see ``AgentSpec`` in the proto for each field's meaning)."""

    model: ModelSpec = field(default_factory=ModelSpec)
    system_prompt: str = ""
    tools: tuple[str, ...] = ()
    approval_tools: tuple[str, ...] = ()
    max_steps: int = 0
    first_tool_choice: str = "auto"
    collection: str = ""
    top_k: int = 0
    max_plan_steps: int = 0
    grader: Grader = Grader.MODEL
    min_score: float = 0.0
    max_tool_rounds: int = 0


@dataclass(frozen=True)
class Assistant:
    assistant_id: str
    graph_id: str
    name: str
    spec: AgentSpec
    tenant: str = ""  # empty: built in, visible to every tenant
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def builtin(self) -> bool:
        return not self.tenant


@dataclass(frozen=True)
class Thread:
    thread_id: str
    tenant: str
    metadata: dict[str, Any]
    status: ThreadStatus
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Interrupt:
    """A pause of a graph: ``value`` is what it asked; ``approval`` the typed form of an approval request."""

    id: str
    value: Any
    approval: ApprovalRequest | None = None


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class ApprovalRequest:
    tool_calls: tuple[ToolCall, ...]
    reason: str


@dataclass(frozen=True)
class StateValues:
    """A graph state: its messages, its other keys (JSON values) and its pending interrupts."""

    messages: tuple[BaseMessage, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)
    interrupts: tuple[Interrupt, ...] = ()


@dataclass(frozen=True)
class Command:
    """A resume, a state update and/or a jump; ``resume`` is JSON (typed decisions are converted to it)."""

    resume: Any = None
    has_resume: bool = False
    update: StateValues | None = None
    goto: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSpec:
    """What a run executes, as requested (see ``RunSpec`` in the proto)."""

    assistant_id: str
    thread_id: str = ""
    input: StateValues | None = None
    command: Command | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    max_steps: int = 0
    configurable: dict[str, Any] = field(default_factory=dict)
    multitask_strategy: MultitaskStrategy = MultitaskStrategy.REJECT
    create_thread: bool = False
    keep_thread: bool = False
    checkpoint_id: str = ""
    interrupt_before: tuple[str, ...] = ()
    interrupt_after: tuple[str, ...] = ()
    on_disconnect: OnDisconnect = OnDisconnect.CANCEL
    stream_modes: frozenset[StreamMode] = frozenset()


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class RunTimings:
    total_s: float = 0.0
    model_s: float = 0.0
    tool_s: float = 0.0
    queue_s: float = 0.0


@dataclass(frozen=True)
class RunError:
    code: str  # a genai_core ErrorCode value, such as "INVALID_ARGUMENT"
    reason: str
    message: str


@dataclass(frozen=True)
class Run:
    run_id: str
    thread_id: str
    tenant: str
    assistant_id: str
    status: RunStatus
    created_at: datetime
    updated_at: datetime
    spec: RunSpec
    graph_id: str = ""
    stateless: bool = False
    max_steps: int = 0
    error: RunError | None = None
    usage: Usage = Usage()
    timings: RunTimings = RunTimings()
    steps: int = 0
    attempt: int = 1
    interrupts: tuple[Interrupt, ...] = ()
    last_sequence: int = 0


# -- run events: what a run streams; convert.py renders each as one RunEvent payload --------------------


@dataclass(frozen=True)
class RunMetadata:
    run_id: str
    thread_id: str
    assistant_id: str
    graph_id: str
    attempt: int


@dataclass(frozen=True)
class NodeStart:
    task_id: str
    node: str
    step: int


@dataclass(frozen=True)
class NodeEnd:
    task_id: str
    node: str
    step: int
    error: str = ""
    interrupted: bool = False


@dataclass(frozen=True)
class MessageEvent:
    message: BaseMessage
    node: str
    step: int


@dataclass(frozen=True)
class NodeUpdate:
    node: str
    values: StateValues


@dataclass(frozen=True)
class ToolCallEvent:
    tool_call: ToolCall
    node: str


@dataclass(frozen=True)
class ToolResult:
    tool_call_id: str
    name: str
    content: str
    is_error: bool
    duration_s: float


@dataclass(frozen=True)
class InterruptEvent:
    interrupts: tuple[Interrupt, ...]


@dataclass(frozen=True)
class CustomEvent:
    value: Any


@dataclass(frozen=True)
class ErrorEvent:
    error: RunError


@dataclass(frozen=True)
class RunEnd:
    status: RunStatus


EventPayload = (
    RunMetadata | NodeStart | NodeEnd | MessageEvent | StateValues | NodeUpdate | ToolCallEvent | ToolResult
    | InterruptEvent | CustomEvent | ErrorEvent | RunEnd
)

# Which stream mode each event kind belongs to; kinds not listed (metadata, error, end) always stream.
EVENT_MODES: dict[type, StreamMode] = {
    StateValues: StreamMode.VALUES,
    NodeUpdate: StreamMode.UPDATES,
    InterruptEvent: StreamMode.UPDATES,
    MessageEvent: StreamMode.MESSAGES,
    NodeStart: StreamMode.TASKS,
    NodeEnd: StreamMode.TASKS,
    ToolCallEvent: StreamMode.TOOLS,
    ToolResult: StreamMode.TOOLS,
    CustomEvent: StreamMode.CUSTOM,
}


@dataclass(frozen=True)
class RunEvent:
    sequence: int
    created_at: datetime
    payload: EventPayload

    def in_modes(self, modes: frozenset[StreamMode]) -> bool:
        mode = EVENT_MODES.get(type(self.payload))
        return mode is None or mode in modes


@dataclass(frozen=True)
class ToolInfo:
    """A tool as ListTools shows it."""

    name: str
    description: str
    parameters: dict[str, Any]
    requires_approval: bool
    provider: str


@dataclass(frozen=True)
class CheckpointRef:
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str


@dataclass(frozen=True)
class StateTask:
    id: str
    name: str
    error: str = ""
    interrupts: tuple[Interrupt, ...] = ()


@dataclass(frozen=True)
class ThreadState:
    values: StateValues
    next: tuple[str, ...]
    checkpoint: CheckpointRef | None
    parent_checkpoint: CheckpointRef | None
    metadata: dict[str, Any]
    tasks: tuple[StateTask, ...]
    created_at: datetime | None


@dataclass(frozen=True)
class Page:
    """A slice of a listing."""

    limit: int = 10
    offset: int = 0


# -- what the ports exchange with other services ------------------------------------------------------------


@dataclass(frozen=True)
class ToolSchema:
    """A function a model may call: what ``tools`` in a chat request lists."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ChatRequest:
    """One chat model call. ``tool_choice`` is "auto", "required", "none" or a tool name; ``json_schema`` and
    ``choices`` constrain the reply's text (at most one of them)."""

    model: str
    messages: tuple[BaseMessage, ...]
    tools: tuple[ToolSchema, ...] = ()
    tool_choice: str = "auto"
    temperature: float = 0.0
    max_tokens: int = 256
    json_schema: dict[str, Any] | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChatDelta:
    """Newly generated content text."""

    content: str


@dataclass(frozen=True)
class ChatDone:
    """The end of a chat call: parsed tool calls, usage, why it stopped."""

    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    finish_reason: str = "stop"
    model: str = ""


@dataclass(frozen=True)
class SearchHit:
    document_id: str
    chunk_id: str
    text: str
    score: float
    title: str = ""
    page_number: int | None = None


@dataclass(frozen=True)
class Citation:
    document_id: str
    chunk_id: str
    context_index: int
    quote: str


@dataclass(frozen=True)
class AnswerDone:
    """The end of a retrieval answer: its citations and contexts."""

    citations: tuple[Citation, ...]
    contexts: tuple[SearchHit, ...]
    usage: Usage = Usage()
    model: str = ""
