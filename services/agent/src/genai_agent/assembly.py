"""Put the domain together from its parts: the composition root and the tests build it the same way.

``Domain`` is what the servicer serves: assistants, threads, runs, the toolbox, and the facts GetInfo
publishes. Nothing here reads the environment or opens anything: the caller passes the opened store,
the ports and the settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from genai_agent.assistants import Assistants, builtin_files, load_yaml
from genai_agent.chatmodels import ModelDefaults, ModelFactory
from genai_agent.events import EventLogs
from genai_agent.execution import Executor
from genai_agent.graphs import CompiledGraphs
from genai_agent.persistence import Store
from genai_agent.ports import ChatBackend, Retrieval
from genai_agent.records import Records
from genai_agent.runs import RunLimits, Runs
from genai_agent.settings import AgentSettings
from genai_agent.threads import Threads
from genai_agent.toolkit import Toolbox


@dataclass(frozen=True)
class Domain:
    assistants: Assistants
    threads: Threads
    runs: Runs
    toolbox: Toolbox
    store_kind: str
    settings: AgentSettings


async def build_domain(store: Store, toolbox: Toolbox, chat: ChatBackend, retrieval: Retrieval,
                       settings: AgentSettings) -> Domain:
    """Set the records up, load the assistants, fail the runs a previous process left behind."""
    records = Records(store.database)
    await records.setup()
    graphs = CompiledGraphs(store.checkpointer)
    assistants = Assistants(records, load_yaml(builtin_files(settings.assistants_dir)), toolbox,
                            settings.max_steps_limit)
    threads = Threads(records, graphs, store.checkpointer)
    executor = Executor(graphs, ModelFactory(chat, ModelDefaults(settings.default_model, settings.openai_api_key)),
                        toolbox, retrieval, tool_timeout=settings.tool_timeout, run_timeout=settings.run_timeout)
    runs = Runs(records, assistants, threads, executor, EventLogs(settings.event_retention, settings.max_events_per_run),
                RunLimits(settings.default_max_steps, settings.max_steps_limit, settings.max_concurrent_runs))
    await runs.recover()
    return Domain(assistants, threads, runs, toolbox, store.kind, settings)
