"""Run the suite against a running Arize Phoenix (``make traces``) and check the traces through Phoenix's API.

    make traces                                   # terminal 1: Phoenix on 127.0.0.1:6006 (OTLP/gRPC :4317)
    .venv/bin/python scripts/phoenix_check.py     # terminal 2: start the suite on free ports, send requests,
                                                  # read every trace back from Phoenix, print it, check it

The suite runs as ``make run`` starts it (honcho and the generated Procfile), on free ports, exporting to
Phoenix with its own project (``openinference.project.name``). Then: a unary and a streamed chat, an ingest,
a search, a streamed RAG answer, and a streamed chat whose client leaves after the first chunk. For each
trace, read back with ``GET /v1/projects/{project}/spans?trace_id=...``, it checks one connected tree,
service and side in every name, the span kinds Phoenix shows (no UNKNOWN), GenAI token counts and
documents; and that start-up, readiness probes and metric scrapes left no trace at all. ``--content``
turns on ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` and checks the texts arrive too.
Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genai_core import services  # noqa: E402

from tests.support.processes import free_port, log_tail, stop, wait_http_ok  # noqa: E402

TENANT = {"X-Tenant": "phoenix-check"}
DOC = ("Berlin is the capital of Germany. The Brandenburg Gate is in Berlin. "
       "Paris is the capital of France. The Eiffel Tower stands in Paris.")
FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        FAILURES.append(what)


def start_suite(work: Path, otlp: str, project: str, content: bool) -> tuple[subprocess.Popen, str, Path]:
    ports = {name: free_port() for name in services.SERVICES}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "GENAI_GATEWAY_PORT": str(free_port()),
           "OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "OTEL_BSP_SCHEDULE_DELAY": "200",
           "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
           "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true" if content else "false"}
    callers = ["GENAI_GATEWAY_", *(row.env_prefix for row in services.SERVICES.values())]
    for name, row in services.SERVICES.items():
        env[f"{row.env_prefix}PORT"] = str(ports[name])
        env[f"{row.env_prefix}METRICS_PORT"] = str(free_port())
        env[f"{row.env_prefix}DATA_DIR"] = str(work / name)
        env[f"{row.env_prefix}CACHE_DIR"] = str(REPO / "var" / "cache")
        env.update({row.target_env(c): f"127.0.0.1:{ports[name]}" for c in callers})
    procfile, log = work / "Procfile", work / "suite.log"
    procfile.write_text(services.procfile())
    names = [line.split(":", 1)[0] for line in services.procfile().splitlines() if not line.startswith("ready")]
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "honcho"), "start", "-d", str(REPO), "-f",
                                 str(procfile), *names], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, f"http://127.0.0.1:{env['GENAI_GATEWAY_PORT']}", log


def spans_of(phoenix: httpx.Client, project: str, trace_id: str | None = None) -> list[dict]:
    params: dict = {"limit": 1000}
    if trace_id:
        params["trace_id"] = [trace_id]
    reply = phoenix.get(f"/v1/projects/{project}/spans", params=params)
    if reply.status_code == 404:  # no span has arrived yet: the project does not exist
        return []
    reply.raise_for_status()
    return reply.json()["data"]


def settled(phoenix: httpx.Client, project: str, trace_id: str, count: int, timeout: float = 30) -> list[dict]:
    """The trace's spans once at least ``count`` arrived and no more came for a second."""
    deadline, seen, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        found = spans_of(phoenix, project, trace_id)
        if len(found) != seen:
            seen, since = len(found), time.monotonic()
        elif seen >= count and time.monotonic() - since > 1.0:
            return found
        time.sleep(0.3)
    return spans_of(phoenix, project, trace_id)


def show(spans: list[dict]) -> dict[str, dict]:
    """Print the trace as an indented tree (name, Phoenix's span kind, service, duration); spans by name."""
    by_id = {s["context"]["span_id"]: s for s in spans}
    children: dict[str | None, list[dict]] = {}
    for s in spans:
        parent = s["parent_id"] if s["parent_id"] in by_id else None
        children.setdefault(parent, []).append(s)

    def ms(s: dict) -> float:
        from datetime import datetime
        start, end = (datetime.fromisoformat(s[k]) for k in ("start_time", "end_time"))
        return (end - start).total_seconds() * 1000

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: x["start_time"]):
            service = s["attributes"].get("service.name", "?")
            print(f"    {'  ' * depth}{s['name']:<{48 - 2 * depth}} {s['span_kind']:<10} {service:<10} {ms(s):8.1f} ms")
            walk(s["context"]["span_id"], depth + 1)

    walk(None, 0)
    return {s["name"]: s for s in spans}


def tree_checks(spans: list[dict], services_expected: set[str]) -> dict[str, dict]:
    named = show(spans)
    ids = {s["context"]["span_id"] for s in spans}
    roots = [s for s in spans if s["parent_id"] not in ids]
    check(len(roots) == 1, f"one connected tree (roots: {[r['name'] for r in roots]})")
    check({s["attributes"].get("service.name") for s in spans} == services_expected,
          f"services {sorted(services_expected)} each named in a span attribute")
    unknown = [s["name"] for s in spans if s["span_kind"] == "UNKNOWN"]
    check(not unknown, f"Phoenix shows no span of kind UNKNOWN {unknown or ''}")
    check(not [s for s in spans if s["name"].endswith(("http send", "http receive"))], "no per-chunk ASGI spans")
    return named


def attrs(span: dict | None) -> dict:
    return span["attributes"] if span else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phoenix", default="http://127.0.0.1:6006", help="Phoenix's HTTP address")
    parser.add_argument("--otlp", default="http://127.0.0.1:4317", help="Phoenix's OTLP/gRPC endpoint")
    parser.add_argument("--project", default=f"genai-check-{int(time.time())}")
    parser.add_argument("--content", action="store_true", help="capture prompts, answers and passages too")
    parser.add_argument("--work", default=str(REPO / "var" / "phoenix" / "check"))
    args = parser.parse_args()
    work = Path(args.work) / args.project
    work.mkdir(parents=True, exist_ok=True)
    phoenix = httpx.Client(base_url=args.phoenix, timeout=30)
    phoenix.get("/healthz").raise_for_status()
    print(f"suite -> Phoenix {args.phoenix} (OTLP {args.otlp}), project {args.project}; logs in {work}")
    proc, base, log = start_suite(work, args.otlp, args.project, args.content)
    try:
        wait_http_ok(f"{base}/readyz", 300, proc=proc, log_path=log)
        http = httpx.Client(base_url=base, timeout=180)
        for _ in range(5):  # probes and scrapes, as an orchestrator would send them
            http.get("/readyz"), http.get("/healthz"), http.get("/metrics")
        time.sleep(2)
        print("\nstart-up, readiness probes (gRPC health checks of every backend) and scrapes")
        startup = spans_of(phoenix, args.project)
        check(not startup, f"no spans at all ({len(startup)}: {sorted({s['name'] for s in startup})[:5]})")

        chat = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "What is 2+2?"}],
                "max_tokens": 12, "temperature": 0}
        print("\nunary chat: POST /v1/chat/completions")
        reply = http.post("/v1/chat/completions", json=chat)
        reply.raise_for_status()
        named = tree_checks(settled(phoenix, args.project, reply.headers["x-trace-id"], 3), {"gateway", "inference"})
        llm = attrs(named.get("inference.Chat"))
        check(named.get("inference.Chat", {}).get("span_kind") == "LLM" and llm.get("llm.token_count.prompt") ==
              reply.json()["usage"]["prompt_tokens"], "inference.Chat is an LLM span with the prompt's tokens")
        check(llm.get("llm.token_count.completion") == reply.json()["usage"]["completion_tokens"],
              "completion tokens as the response says")

        print("\nstreamed chat: POST /v1/chat/completions stream=true")
        with http.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as s:
            trace_id = s.headers["x-trace-id"]
            text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                           for line in s.iter_lines() if line.startswith("data: {") and '"choices":[{' in line)
        named = tree_checks(settled(phoenix, args.project, trace_id, 3), {"gateway", "inference"})
        client, server = named.get("gateway → inference.ChatStream"), named.get("inference.ChatStream")
        check(client is not None and server is not None and server["parent_id"] == client["context"]["span_id"],
              "inference.ChatStream hangs under gateway → inference.ChatStream (the caller's span is exported)")
        check(any(e["name"] == "gen_ai.first_token" for e in (server or {}).get("events", [])),
              "the LLM span has the gen_ai.first_token event")
        if args.content:
            check(attrs(server).get("output.value") == text, "the streamed answer is the LLM span's output")

        print("\ningest and search: POST /v1/collections/kb/documents, POST /v1/collections/kb/search")
        http.post("/v1/collections", json={"name": "kb"}, headers=TENANT).raise_for_status()
        http.post("/v1/collections/kb/documents", headers=TENANT,
                  json={"documents": [{"id": "cities", "text": DOC}]}).raise_for_status()
        reply = http.post("/v1/collections/kb/search", headers=TENANT, json={"query": "Brandenburg Gate", "top_k": 2})
        reply.raise_for_status()
        named = tree_checks(settled(phoenix, args.project, reply.headers["x-trace-id"], 5),
                            {"gateway", "retrieval", "embedding"})
        search = attrs(named.get("retrieval.Search"))
        check(named.get("retrieval.Search", {}).get("span_kind") == "RETRIEVER" and
              search.get("retrieval.documents.0.document.id") == reply.json()["data"][0]["chunk"]["chunk_id"],
              "retrieval.Search is a RETRIEVER span listing the chunks found")
        tokens = [(n, a["attributes"].get("llm.token_count.prompt")) for n, a in named.items()
                  if a["attributes"].get("llm.token_count.prompt")]
        check(tokens == [("embedding.Embed", search.get("genai.retrieval.embedding_tokens"))],
              f"the query's tokens are counted once, on the embedding span ({tokens})")

        print("\nstreamed RAG answer: POST /v1/rag/answer stream=true")
        with http.stream("POST", "/v1/rag/answer", headers=TENANT, json={
                "collection": "kb", "question": "What is the capital of Germany?", "max_tokens": 16,
                "stream": True}) as s:
            trace_id = s.headers["x-trace-id"]
            events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
        named = tree_checks(settled(phoenix, args.project, trace_id, 15),
                            {"gateway", "retrieval", "embedding", "tokenizer", "inference"})
        kinds = {n: s["span_kind"] for n, s in named.items()}
        check(kinds.get("retrieval.AnswerStream") == "CHAIN" and kinds.get("retrieval.search kb") == "RETRIEVER"
              and kinds.get("embedding.Embed") == "EMBEDDING" and kinds.get("inference.ChatStream") == "LLM",
              "kinds: the answer a CHAIN, its search a RETRIEVER, embedding EMBEDDING, generation LLM")
        docs = attrs(named.get("retrieval.search kb"))
        check(docs.get("retrieval.documents.0.document.id") == events[0]["contexts"][0]["chunk"]["chunk_id"],
              "the RETRIEVER span lists the passages the answer used")
        check(attrs(named.get("inference.ChatStream")).get("llm.token_count.completion") ==
              events[-1]["usage"]["completion_tokens"], "the LLM span counts the answer's tokens")
        content = "retrieval.documents.0.document.content" in docs
        check(content == args.content, f"passage texts in spans only with content capture (found: {content})")

        print("\nstreamed chat, client gone after the first chunk")
        with http.stream("POST", "/v1/chat/completions", json={**chat, "max_tokens": 128, "temperature": 0.9,
                                                                "messages": [{"role": "user", "content": "A story"}],
                                                                "stream": True}) as s:
            trace_id = s.headers["x-trace-id"]
            next(line for line in s.iter_lines() if line.startswith("data: "))
        named = tree_checks(settled(phoenix, args.project, trace_id, 3), {"gateway", "inference"})
        server = attrs(named.get("inference.ChatStream"))
        check(server.get("rpc.grpc.status_code") == 1, "the generation's span ended, CANCELLED, when the client left")
    finally:
        print(f"\nstopping the suite (exit {stop(proc, 30)})")
    if FAILURES:
        print(f"\n{len(FAILURES)} check(s) failed; suite log tail:\n{log_tail(log)}")
        return 1
    print(f"\nall checks passed; open {args.phoenix}/projects and pick '{args.project}' to read the traces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
