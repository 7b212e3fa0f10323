"""gRPC adapter of the retrieval pipelines: request -> ``convert`` -> pipeline -> ``convert`` -> response.

It fills request ids, usage, timings and in-band stream errors with ``genai_core.rpc`` and owns no rule;
errors are raised by the pipelines (or by ``convert``) and mapped to status codes by the core interceptor.
"""

from __future__ import annotations

import time

from genai.retrieval.v1 import retrieval_service_pb2 as pb
from genai.retrieval.v1 import retrieval_service_pb2_grpc as pb_grpc
from genai_core import rpc, spans
from genai_core.deferred import Deferred
from genai_core.operations import Operations
from genai_core.operations_servicer import operations_spec, to_proto
from genai_core.server import ServiceSpec

from genai_retrieval import convert, traces
from genai_retrieval.pipelines import Pipelines
from genai_retrieval.settings import NAME

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name


class RetrievalServicer(pb_grpc.RetrievalServiceServicer):
    def __init__(self, pipelines: Deferred[Pipelines], operations: Operations) -> None:
        self._pipelines = pipelines  # set once the store is open
        self._operations = operations

    @property
    def _p(self) -> Pipelines:
        return self._pipelines.get()

    # ------------------------------------------------------------------------------------- collections

    async def GetInfo(self, request, context):
        return convert.info(self._p.info, rpc.request_id(request))

    async def CreateCollection(self, request, context):
        created = await self._p.catalog.create(request.tenant, convert.collection_spec(request))
        return pb.CreateCollectionResponse(request_id=rpc.request_id(request), collection=convert.collection(created))

    async def GetCollection(self, request, context):
        catalog = self._p.catalog
        c = await catalog.get(request.tenant, request.collection)
        return pb.GetCollectionResponse(request_id=rpc.request_id(request),
                                        collection=convert.collection(c, await catalog.counts(c)))

    async def ListCollections(self, request, context):
        catalog = self._p.catalog
        page = await catalog.list(request.tenant, request.page_token, request.page_size)
        return pb.ListCollectionsResponse(
            request_id=rpc.request_id(request), next_page_token=page.next_page_token,
            collections=[convert.collection(c, await catalog.counts(c)) for c in page.items],
        )

    async def DeleteCollection(self, request, context):
        documents = await self._p.catalog.delete(request.tenant, request.collection)
        return pb.DeleteCollectionResponse(request_id=rpc.request_id(request), deleted_document_count=documents)

    # ----------------------------------------------------------------------------------------- ingest

    def _ingest(self, request):  # noqa: ANN202
        return self._p.ingestion.run(request.tenant, request.collection, convert.documents(request.documents),
                                     convert.chunking_options(request.chunking, "chunking"))

    async def IngestDocuments(self, request, context):
        start = time.perf_counter()
        summary = await self._p.ingestion.collect(request.tenant, request.collection,
                                                  convert.documents(request.documents),
                                                  convert.chunking_options(request.chunking, "chunking"))
        return convert.ingested(summary, rpc.request_id(request), start)

    async def StartIngestDocuments(self, request, context):
        op = await self._p.ingestion.start(self._operations, request.tenant, request.collection,
                                           convert.documents(request.documents),
                                           convert.chunking_options(request.chunking, "chunking"))
        return pb.StartIngestDocumentsResponse(request_id=rpc.request_id(request),
                                               operation=to_proto(op, convert.OPERATIONS))

    async def IngestDocumentsStream(self, request, context):
        start = time.perf_counter()
        rid = rpc.request_id(request)
        events = convert.ingest_events(self._ingest(request), start)
        async for kind, event in rpc.in_band(events, "ingest stream", rid):
            yield pb.IngestDocumentsStreamResponse(request_id=rid, **{kind: event})

    # -------------------------------------------------------------------------------------- documents

    async def GetDocument(self, request, context):
        doc = await self._p.documents.get(request.tenant, request.collection, request.document_id,
                                          include_chunks=request.include_chunks)
        return pb.GetDocumentResponse(request_id=rpc.request_id(request), document=convert.document(doc))

    async def ListDocuments(self, request, context):
        page = await self._p.documents.list(request.tenant, request.collection, convert.optional_filter(request),
                                            request.page_token, request.page_size)
        return pb.ListDocumentsResponse(request_id=rpc.request_id(request), next_page_token=page.next_page_token,
                                        documents=[convert.document(d) for d in page.items])

    async def DeleteDocuments(self, request, context):
        document_ids, flt = convert.delete_selector(request)
        deleted = await self._p.documents.delete(request.tenant, request.collection, document_ids, flt)
        return pb.DeleteDocumentsResponse(request_id=rpc.request_id(request), deleted_document_count=deleted.documents,
                                          deleted_chunk_count=deleted.chunks)

    # ------------------------------------------------------------------------------ search and answers

    async def Search(self, request, context):
        start = time.perf_counter()
        found = await self._p.searcher.search(request.tenant, request.collection, request.query,
                                              convert.search_options(request.options, "options"))
        return pb.SearchResponse(request_id=rpc.request_id(request), results=convert.search_results(found.results),
                                 usage=rpc.usage(found.tokens), timings=rpc.timings(time.perf_counter() - start))

    async def Answer(self, request, context):
        start = time.perf_counter()
        span = spans.current(spans.Operation.WORKFLOW).input_text(request.question)
        a = await self._p.answerer.answer(request.tenant, request.collection, request.question,
                                          convert.search_options(request.search, "search"),
                                          convert.generation_options(request.generation))
        span.output_text(a.answer)
        return pb.AnswerResponse(
            request_id=rpc.request_id(request), answer=a.answer, citations=convert.citations(a.citations),
            contexts=convert.search_results(a.contexts), usage=convert.usage(a.usage),
            retrieval_usage=rpc.usage(a.retrieval_tokens), timings=rpc.timings(time.perf_counter() - start),
            model=a.model, truncated=a.truncated,
        )

    async def AnswerStream(self, request, context):
        start = time.perf_counter()
        rid = rpc.request_id(request)
        span = spans.current(spans.Operation.WORKFLOW).input_text(request.question)
        events = traces.answered(span, self._p.answerer.stream(
            request.tenant, request.collection, request.question, convert.search_options(request.search, "search"),
            convert.generation_options(request.generation)))
        async for kind, event in rpc.in_band(convert.answer_events(events, start), "answer stream", rid):
            yield pb.AnswerStreamResponse(request_id=rid, **{kind: event})


def service_spec(pipelines: Deferred[Pipelines], operations: Operations | None = None) -> ServiceSpec:
    """The RetrievalService; ``operations`` runs StartIngestDocuments (tests that start none may leave it out)."""
    servicer = RetrievalServicer(pipelines, operations or Operations(NAME))
    return ServiceSpec(SERVICE_NAME, lambda server: pb_grpc.add_RetrievalServiceServicer_to_server(servicer, server))


def service_specs(pipelines: Deferred[Pipelines], operations: Operations) -> list[ServiceSpec]:
    """What the server mounts: the RetrievalService and the OperationsService that reads its operations."""
    return [service_spec(pipelines, operations), operations_spec(operations, convert.OPERATIONS)]
