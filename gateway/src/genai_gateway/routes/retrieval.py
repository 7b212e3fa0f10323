"""Retrieval routes: collections, document upload (JSON and multipart files), search and RAG answers (SSE).

The tenant comes from the ``X-Tenant`` header (default "default"); a tenant never sees another's collections.
Responses are the proto messages as JSON (field names as in the proto).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from genai.retrieval.v1 import retrieval_service_pb2 as pb
from genai_core.limits import PROTO_MAX, PROTO_MIN, RETRIEVAL
from genai_core.structs import whole_numbers
from genai_core.telemetry import current_trace_id
from google.protobuf import json_format, struct_pb2
from pydantic import ValidationError

from genai_gateway.errors import GatewayError, call, invalid_argument
from genai_gateway.openapi import inline_schema, stream_response
from genai_gateway.routes import calls, sse
from genai_gateway.routes import retrieval_protocol as api
from genai_gateway.routes._fields import set_present
from genai_gateway.routes.operations import operation_json
from genai_gateway.routes.operations_protocol import Operation
from genai_gateway.routing import ApiRoute

router = APIRouter(tags=["retrieval"], route_class=ApiRoute)

Tenant = Annotated[str, Header(alias="X-Tenant", pattern=RETRIEVAL.name_pattern,
                               description="the tenant that owns the collections (default: `default`); an empty "
                                           "header is an error, not the default tenant")]
Collection = Annotated[str, Path(pattern=RETRIEVAL.name_pattern, description="the collection's name")]
PageSize = Annotated[int, Query(ge=1, le=RETRIEVAL.max_page_size, description="items per page")]
MODES = {None: pb.SEARCH_MODE_UNSPECIFIED, "dense": pb.SEARCH_MODE_DENSE, "sparse": pb.SEARCH_MODE_SPARSE,
         "hybrid": pb.SEARCH_MODE_HYBRID}
FUSIONS = {None: pb.FUSION_UNSPECIFIED, "rrf": pb.FUSION_RRF, "dbsf": pb.FUSION_DBSF}
DISTANCES = {"cosine": pb.DISTANCE_COSINE, "dot": pb.DISTANCE_DOT, "euclid": pb.DISTANCE_EUCLID,
             "manhattan": pb.DISTANCE_MANHATTAN}
EXTENSIONS = {".md": "text/markdown", ".markdown": "text/markdown", ".html": "text/html", ".htm": "text/html",
              ".pdf": "application/pdf", ".txt": "text/plain"}
RENAMES = {r"^documents\[(\d+)\]\.(text|data|mime_type)": r"documents[\1]", r"^options\.": "", r"^search\.": ""}




_UINT64 = {"document_count", "chunk_count", "size_bytes", "deleted_document_count", "deleted_chunk_count"}


def _ints(value: Any) -> Any:
    """proto3 JSON writes 64-bit integers as strings (the counts here fit a JSON number), and a Struct's
    numbers as doubles (metadata ``{"year": 2025}`` would come back ``2025.0``)."""
    if isinstance(value, dict):
        return {k: int(v) if k in _UINT64 and isinstance(v, str) else whole_numbers(v) if k == "metadata" else _ints(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def _json(message) -> dict[str, Any]:
    # Zero counts and empty lists are answers too ("chunk_count": 0), so fields without presence always print.
    return _ints(json_format.MessageToDict(message, preserving_proto_field_name=True,
                                           always_print_fields_with_no_presence=True))


def _struct(value: dict[str, Any], param: str = "metadata") -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    try:
        s.update(value)
    except (OverflowError, ValueError, TypeError) as exc:  # e.g. 10**400: a Struct number is a double
        raise invalid_argument(param, f"a value cannot be stored: {exc}") from None
    return s


def _filter(value: dict[str, Any] | None, param: str = "filter") -> pb.Filter | None:
    if value is None:
        return None
    if set(value) & {"must", "should", "must_not"}:
        try:
            return json_format.ParseDict(value, pb.Filter())
        except json_format.ParseError as exc:
            raise invalid_argument(param, str(exc)) from None
    conditions = []
    for key, v in value.items():  # shorthand: every key must equal (or be any of) its value
        f = pb.FieldCondition(key=key)
        if isinstance(v, bool):
            f.equals.bool_value = v
        elif isinstance(v, int) and _int64(v):
            f.equals.integer_value = v
        elif isinstance(v, str):
            f.equals.string_value = v
        elif isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            f.any_of.string_values.extend(v)
        elif isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) and _int64(x) for x in v):
            f.any_of.integer_values.extend(v)
        else:
            raise invalid_argument(f"{param}.{key}", "use a string, a 64-bit integer, a boolean or a non-empty list of strings or "
                                         "64-bit integers")
        conditions.append(pb.Condition(field=f))
    return pb.Filter(must=conditions)


def _int64(value: int) -> bool:
    return PROTO_MIN["int64"] <= value <= PROTO_MAX["int64"]


def _options(body: api.SearchParams) -> pb.SearchOptions:
    o = pb.SearchOptions(mode=MODES[body.mode], fusion=FUSIONS[body.fusion],
                         rerank=pb.RerankOptions(enabled=body.rerank, model=body.rerank_model,
                                                 fuse=body.rerank_fuse))
    if body.top_k is not None:
        o.top_k = body.top_k
    if body.score_threshold is not None:
        o.score_threshold = body.score_threshold
    if body.candidate_count is not None:
        o.candidate_count = body.candidate_count
    flt = _filter(body.filter)
    if flt is not None:
        o.filter.CopyFrom(flt)
    return o


def _chunking(size: int | None, overlap: int | None) -> pb.ChunkingOptions:
    c = pb.ChunkingOptions()
    if size is not None:
        c.chunk_size_tokens = size
    if overlap is not None:
        c.chunk_overlap_tokens = overlap
    return c


# ---------------------------------------------------------------------------------------------- collections


@router.post("/v1/collections", status_code=201, summary="Create a collection")
async def create_collection(body: api.CollectionCreate, request: Request, x_tenant: Tenant = "default"):
    message = pb.CreateCollectionRequest(
        request_id=calls.request_id(request), tenant=x_tenant, name=body.name, description=body.description,
        embedding_model=body.embedding_model, sparse_enabled=body.sparse, labels=body.labels,
        vector_config=pb.VectorConfig(dimensions=body.dimensions or 0, distance=DISTANCES[body.distance]),
        default_chunking=_chunking(body.chunk_size_tokens, body.chunk_overlap_tokens),
    )
    reply = await call(calls.stub(request, "retrieval").CreateCollection(message), {r"^vector_config\.": "", r"^default_chunking\.": ""})
    return _json(reply.collection)


@router.get("/v1/collections", summary="List the tenant's collections")
async def list_collections(request: Request, x_tenant: Tenant = "default", page_size: PageSize = 100,
                           page_token: str = ""):
    reply = await call(calls.stub(request, "retrieval").ListCollections(pb.ListCollectionsRequest(
        request_id=calls.request_id(request), tenant=x_tenant, page_size=page_size, page_token=page_token)))
    return {"object": "list", "data": [_json(c) for c in reply.collections], "next_page_token": reply.next_page_token}


@router.get("/v1/collections/{collection}", summary="Get a collection with its counts")
async def get_collection(collection: Collection, request: Request, x_tenant: Tenant = "default"):
    reply = await call(calls.stub(request, "retrieval").GetCollection(pb.GetCollectionRequest(
        request_id=calls.request_id(request), tenant=x_tenant, collection=collection)))
    return _json(reply.collection)


@router.delete("/v1/collections/{collection}", summary="Delete a collection and its documents")
async def delete_collection(collection: Collection, request: Request, x_tenant: Tenant = "default"):
    reply = await call(calls.stub(request, "retrieval").DeleteCollection(pb.DeleteCollectionRequest(
        request_id=calls.request_id(request), tenant=x_tenant, collection=collection)))
    return {"deleted": True, "deleted_document_count": reply.deleted_document_count}


# ------------------------------------------------------------------------------------------------ documents


def _wants_operation(request: Request, size: int) -> bool:
    """Large ingests (or any, with ``Prefer: respond-async``, RFC 7240) run as a long-running operation."""
    prefer = {p.strip().lower() for p in request.headers.get("prefer", "").split(",")}
    return "respond-async" in prefer or size > request.app.state.settings.ingest_async_bytes


async def _ingest(request: Request, tenant: str, collection: str, docs: list[pb.DocumentInput],
                  chunking: pb.ChunkingOptions, renames: dict[str, str] = RENAMES) -> Any:
    message = pb.IngestDocumentsRequest(request_id=calls.request_id(request), tenant=tenant, collection=collection,
                                        documents=docs, chunking=chunking)
    size = sum(len(d.text.encode()) + len(d.data) for d in docs)
    stub = calls.stub(request, "retrieval")
    if _wants_operation(request, size):
        started = await calls.unary(request, stub.StartIngestDocuments(
            pb.StartIngestDocumentsRequest.FromString(message.SerializeToString())), renames)  # same fields
        operation = operation_json(started.operation)
        return JSONResponse(operation, status_code=202, headers={"Location": f"/v1/{operation['name']}"})
    timeout = calls.deadlines(request).ingest(len(docs), size)
    reply = await calls.unary(request, stub.IngestDocuments(message, timeout=timeout), renames)
    return _json(reply)


@router.post(
    "/v1/collections/{collection}/documents",
    summary="Add or replace documents: JSON {documents: [...]}, or multipart files with a `metadata` form field",
    responses={202: {"model": Operation, "description": "Large uploads (over GENAI_GATEWAY_INGEST_ASYNC_BYTES) or "
                     "`Prefer: respond-async`: the ingest runs as an operation; GET the `Location` for its result."}},
    openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": inline_schema(api.DocumentsIn)},
        "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
            "files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}},
            "metadata": {"type": "string", "description": "a JSON object every uploaded document gets"},
            "chunk_size_tokens": {"type": "integer", "minimum": RETRIEVAL.min_chunk_size_tokens,
                                  "maximum": RETRIEVAL.max_chunk_size_tokens},
            "chunk_overlap_tokens": {"type": "integer", "minimum": 0,
                                     "maximum": RETRIEVAL.max_chunk_size_tokens - 1}}}}}}},
)
async def add_documents(collection: Collection, request: Request, x_tenant: Tenant = "default"):
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _upload(collection, request, x_tenant)
    try:
        body = api.DocumentsIn.model_validate(await request.json())  # the checked request: text protobuf can carry
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    except ValueError:
        raise invalid_argument("body", "send JSON {documents: [...]} or multipart/form-data files") from None
    docs = [pb.DocumentInput(document_id=d.id, text=d.text, mime_type=d.content_type, title=d.title,
                             source_uri=d.source_uri, metadata=_struct(d.metadata, f"documents[{i}].metadata"))
                 for i, d in enumerate(body.documents)]
    return await _ingest(request, x_tenant, collection, docs, _chunking(body.chunk_size_tokens,
                                                                        body.chunk_overlap_tokens))


async def _upload(collection: str, request: Request, tenant: str) -> dict[str, Any]:
    form = await request.form()
    files = [f for f in form.getlist("files") + form.getlist("file") if not isinstance(f, str)]
    if not files:
        raise invalid_argument("files", "attach at least one file as `files`")
    try:
        metadata = json.loads(form.get("metadata") or "{}")
    except json.JSONDecodeError as exc:
        raise invalid_argument("metadata", f"not JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise invalid_argument("metadata", "must be a JSON object")

    def number(name: str, low: int, high: int) -> int | None:
        raw = form.get(name)
        if raw in (None, ""):
            return None
        if not (str(raw).isascii() and str(raw).isdigit()) or not low <= int(raw) <= high:
            raise invalid_argument(name, f"must be an integer between {low} and {high}")
        return int(raw)

    docs = []
    for f in files:
        name = f.filename or "upload"
        suffix = name[name.rfind("."):].lower() if "." in name else ""
        mime = EXTENSIONS.get(suffix) or (f.content_type or "text/plain").split(";")[0]
        if mime == "application/octet-stream" and not suffix:
            mime = "text/plain"  # a file without extension may be text; the service rejects it if it is binary
        stem = name.rsplit("/", 1)[-1]
        # The bytes as they are: the service decodes and checks them (UTF-8, not binary, a supported type).
        doc = pb.DocumentInput(document_id=stem, mime_type=mime, title=stem, source_uri=name, data=await f.read(),
                               metadata=_struct({"filename": stem, **metadata}))
        docs.append(doc)
    size = number("chunk_size_tokens", RETRIEVAL.min_chunk_size_tokens, RETRIEVAL.max_chunk_size_tokens)
    overlap = number("chunk_overlap_tokens", 0, RETRIEVAL.max_chunk_size_tokens - 1)
    # The service names documents[i]; a multipart client sent files[i].
    return await _ingest(request, tenant, collection, docs, _chunking(size, overlap),
                         {r"^documents\[(\d+)\][.\w]*": r"files[\1]", **RENAMES})


@router.get("/v1/collections/{collection}/documents", summary="List documents")
async def list_documents(collection: Collection, request: Request, x_tenant: Tenant = "default", page_size: PageSize = 100,
                         page_token: str = ""):
    reply = await call(calls.stub(request, "retrieval").ListDocuments(pb.ListDocumentsRequest(
        request_id=calls.request_id(request), tenant=x_tenant, collection=collection, page_size=page_size, page_token=page_token)))
    return {"object": "list", "data": [_json(d) for d in reply.documents], "next_page_token": reply.next_page_token}


@router.get("/v1/collections/{collection}/documents/{document_id}", summary="Get a document and its chunks")
async def get_document(collection: Collection, document_id: str, request: Request, x_tenant: Tenant = "default",
                       include_chunks: bool = False):
    reply = await call(calls.stub(request, "retrieval").GetDocument(pb.GetDocumentRequest(
        request_id=calls.request_id(request), tenant=x_tenant, collection=collection, document_id=document_id,
        include_chunks=include_chunks)))
    return _json(reply.document)


@router.post("/v1/collections/{collection}/documents/delete", summary="Delete documents by ids or by filter")
async def delete_documents(collection: Collection, body: api.DocumentsDelete, request: Request, x_tenant: Tenant = "default"):
    message = pb.DeleteDocumentsRequest(request_id=calls.request_id(request), tenant=x_tenant, collection=collection)
    if body.ids:
        message.document_ids.document_ids.extend(body.ids)
    elif body.filter:
        message.filter.CopyFrom(_filter(body.filter))
    else:
        raise invalid_argument("ids", "set ids or filter")
    reply = await call(calls.stub(request, "retrieval").DeleteDocuments(message))
    return {"deleted_document_count": reply.deleted_document_count, "deleted_chunk_count": reply.deleted_chunk_count}


# ------------------------------------------------------------------------------------------ search and RAG


@router.post("/v1/collections/{collection}/search", summary="Dense, sparse or hybrid search with filters and rerank")
async def search(collection: Collection, body: api.SearchIn, request: Request, x_tenant: Tenant = "default"):
    message = pb.SearchRequest(request_id=calls.request_id(request), tenant=x_tenant, collection=collection, query=body.query,
                               options=_options(body))
    # Reranking scores every candidate with the embedding model: that part grows with the candidates.
    reranked = (body.candidate_count or RETRIEVAL.max_candidate_count) if body.rerank else 0
    timeout = calls.deadlines(request).inputs(reranked)
    reply = await calls.unary(request, calls.stub(request, "retrieval").Search(message, timeout=timeout), RENAMES)
    return {"object": "list", "data": [_json(r) for r in reply.results], "usage": _json(reply.usage)}


def _answer_request(body: api.AnswerIn, rid: str, tenant: str) -> pb.AnswerRequest:
    g = set_present(
        pb.GenerationOptions(model=body.model, system_prompt=body.system_prompt),
        max_new_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        context_token_budget=body.context_token_budget,
    )
    return pb.AnswerRequest(request_id=rid, tenant=tenant, collection=body.collection, question=body.question,
                            search=_options(body), generation=g)


def _error_frame(exc: GatewayError) -> bytes:
    return sse.data({"type": "error", "error": {"message": exc.message, "type": exc.type, "code": exc.code,
                                                "param": exc.param, "trace_id": current_trace_id()}})


async def _answer_frames(stream: sse.GrpcStream):
    async for event in stream:
        kind = event.WhichOneof("event")
        yield sse.data({"type": kind, **_json(getattr(event, kind))})


@router.post("/v1/rag/answer", summary="Answer a question from a collection, with citations (SSE when stream is true)",
             responses=stream_response("The answer, or contexts/delta/complete events when stream is true"))
async def rag_answer(body: api.AnswerIn, request: Request, x_tenant: Tenant = "default"):
    message = _answer_request(body, calls.request_id(request), x_tenant)
    stub = calls.stub(request, "retrieval")
    renames = {**RENAMES, r"^generation\.max_new_tokens": "max_tokens", r"^generation\.": ""}
    if body.stream:
        streaming = pb.AnswerStreamRequest.FromString(message.SerializeToString())
        streams = await sse.open_streams([lambda: stub.AnswerStream(streaming, timeout=calls.deadlines(request).generate())], [renames])
        return sse.EventStream(sse.events(_answer_frames(streams[0]), streams, _error_frame, sse.DONE))
    reply = await calls.unary(request, stub.Answer(message, timeout=calls.deadlines(request).generate()), renames)
    return _json(reply)
