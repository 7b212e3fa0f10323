"""The retrieval servicer in-process over the REAL embedding service (and tokenizer + inference for answers)."""

from __future__ import annotations

import grpc
import pytest
from genai.retrieval.v1 import retrieval_service_pb2 as pb
from google.protobuf import struct_pb2

from tests.support.pdf import make_pdf

DOCS = {
    "paris": ("Paris is the capital of France. The Eiffel Tower stands in Paris.", {"lang": "en", "year": 2020}),
    "berlin": ("Berlin is the capital of Germany. The Brandenburg Gate is in Berlin.", {"lang": "en", "year": 2018}),
    "madrid": ("Madrid es la capital de Espana. El Prado esta en Madrid.", {"lang": "es", "year": 2021}),
}


def _doc(doc_id: str, text: str, metadata: dict, mime: str = "text/plain") -> pb.DocumentInput:
    meta = struct_pb2.Struct()
    meta.update(metadata)
    return pb.DocumentInput(document_id=doc_id, text=text, mime_type=mime, metadata=meta, title=doc_id.title())


def _eq(key: str, value: str) -> pb.Condition:
    return pb.Condition(field=pb.FieldCondition(key=key, equals=pb.Value(string_value=value)))


async def _seed(stub, tenant: str = "acme", name: str = "docs", sparse: bool = True):
    await stub.CreateCollection(pb.CreateCollectionRequest(tenant=tenant, name=name, sparse_enabled=sparse))
    docs = [_doc(k, t, m) for k, (t, m) in DOCS.items()]
    return await stub.IngestDocuments(pb.IngestDocumentsRequest(tenant=tenant, collection=name, documents=docs))


@pytest.fixture(params=["edge", "client"])
def kind(request) -> str:
    return request.param


async def test_collections_and_tenancy(make_stack, kind):
    async with make_stack(kind) as (stub, _):
        info = await stub.GetInfo(pb.GetInfoRequest())
        assert "application/pdf" in info.supported_mime_types and info.engine == ("qdrant-edge" if kind == "edge" else "qdrant")
        created = await stub.CreateCollection(pb.CreateCollectionRequest(tenant="acme", name="docs", sparse_enabled=True))
        c = created.collection
        assert c.vector_config.dimensions == 384 and c.embedding_model == "all-minilm-l6-v2" and c.sparse_enabled
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateCollection(pb.CreateCollectionRequest(tenant="acme", name="docs"))
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateCollection(pb.CreateCollectionRequest(
                tenant="acme", name="bad", vector_config=pb.VectorConfig(dimensions=100)))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "vector_config.dimensions" in err.value.details()
        await stub.IngestDocuments(pb.IngestDocumentsRequest(
            tenant="acme", collection="docs", documents=[_doc("paris", *DOCS["paris"])]))
        # another tenant can neither see nor change it
        for call in (
            stub.GetCollection(pb.GetCollectionRequest(tenant="evil", collection="docs")),
            stub.Search(pb.SearchRequest(tenant="evil", collection="docs", query="Paris")),
            stub.DeleteCollection(pb.DeleteCollectionRequest(tenant="evil", collection="docs")),
            stub.IngestDocuments(pb.IngestDocumentsRequest(tenant="evil", collection="docs",
                                                           documents=[_doc("x", "text", {})])),
            stub.DeleteDocuments(pb.DeleteDocumentsRequest(tenant="evil", collection="docs",
                                                           document_ids=pb.DocumentIds(document_ids=["paris"]))),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert (await stub.ListCollections(pb.ListCollectionsRequest(tenant="evil"))).collections == []
        listed = await stub.ListCollections(pb.ListCollectionsRequest(tenant="acme"))
        assert [(x.name, x.document_count) for x in listed.collections] == [("docs", 1)]
        got = await stub.GetCollection(pb.GetCollectionRequest(tenant="acme", collection="docs"))
        assert got.collection.document_count == 1 and got.collection.chunk_count >= 1
        deleted = await stub.DeleteCollection(pb.DeleteCollectionRequest(tenant="acme", collection="docs"))
        assert deleted.deleted_document_count == 1


async def test_ingest_formats_idempotent_and_delete_by_filter(make_stack, kind):
    async with make_stack(kind) as (stub, _):
        first = await _seed(stub)
        assert [r.outcome for r in first.results] == [pb.DocumentResult.OUTCOME_CREATED] * 3
        assert first.usage.prompt_tokens > 0
        again = await stub.IngestDocuments(pb.IngestDocumentsRequest(
            tenant="acme", collection="docs", documents=[_doc("paris", *DOCS["paris"])]))
        assert again.results[0].outcome == pb.DocumentResult.OUTCOME_UNCHANGED
        long_text = " ".join(f"Sentence number {i} talks about rivers and bridges." for i in range(60))
        replaced = await stub.IngestDocuments(pb.IngestDocumentsRequest(
            tenant="acme", collection="docs", documents=[_doc("paris", long_text, {"lang": "en", "year": 2020})]))
        assert replaced.results[0].outcome == pb.DocumentResult.OUTCOME_REPLACED
        assert replaced.results[0].chunk_count > 1
        doc = (await stub.GetDocument(pb.GetDocumentRequest(tenant="acme", collection="docs", document_id="paris",
                                                            include_chunks=True))).document
        assert len(doc.chunks) == doc.chunk_count == replaced.results[0].chunk_count  # old chunks are gone
        assert [c.index for c in doc.chunks] == list(range(doc.chunk_count))
        assert all(c.metadata["lang"] == "en" for c in doc.chunks)
        html = "<html><body><h1>Rome</h1><p>Rome is the capital of Italy.</p><script>x()</script></body></html>"
        md = "# Lisbon\n\nLisbon is the capital of Portugal.\n\n## Trams\n\nYellow trams climb the hills."
        pdf = pb.DocumentInput(document_id="pdf", mime_type="application/pdf",
                               data=make_pdf(["Vienna is the capital of Austria.", "It has coffee houses."]))
        result = await stub.IngestDocuments(pb.IngestDocumentsRequest(tenant="acme", collection="docs", documents=[
            _doc("rome", html, {"lang": "en"}, "text/html"), _doc("lisbon", md, {"lang": "en"}, "text/markdown"), pdf]))
        assert all(r.outcome == pb.DocumentResult.OUTCOME_CREATED for r in result.results)
        rome = (await stub.GetDocument(pb.GetDocumentRequest(tenant="acme", collection="docs", document_id="rome",
                                                             include_chunks=True))).document
        assert "x()" not in rome.chunks[0].text and "capital of Italy" in rome.chunks[0].text
        pdf_doc = (await stub.GetDocument(pb.GetDocumentRequest(tenant="acme", collection="docs", document_id="pdf",
                                                                include_chunks=True))).document
        assert pdf_doc.mime_type == "application/pdf" and pdf_doc.chunks[0].page_number == 1
        listed = await stub.ListDocuments(pb.ListDocumentsRequest(tenant="acme", collection="docs", page_size=4))
        assert [d.document_id for d in listed.documents] == ["berlin", "lisbon", "madrid", "paris"]
        assert listed.next_page_token
        es = await stub.ListDocuments(pb.ListDocumentsRequest(tenant="acme", collection="docs",
                                                              filter=pb.Filter(must=[_eq("lang", "es")])))
        assert [d.document_id for d in es.documents] == ["madrid"]
        deleted = await stub.DeleteDocuments(pb.DeleteDocumentsRequest(
            tenant="acme", collection="docs", filter=pb.Filter(must=[_eq("lang", "es")])))
        assert deleted.deleted_document_count == 1 and deleted.deleted_chunk_count >= 1
        deleted = await stub.DeleteDocuments(pb.DeleteDocumentsRequest(
            tenant="acme", collection="docs", document_ids=pb.DocumentIds(document_ids=["rome", "nope"])))
        assert deleted.deleted_document_count == 1
        got = await stub.GetCollection(pb.GetCollectionRequest(tenant="acme", collection="docs"))
        assert got.collection.document_count == 4


async def test_ingest_errors_leave_the_collection_unchanged(make_stack):
    async with make_stack("edge", max_document_bytes=2000) as (stub, _):
        await _seed(stub)
        before = (await stub.GetCollection(pb.GetCollectionRequest(tenant="acme", collection="docs"))).collection
        cases = [
            ([_doc("ok", "fine text", {}), pb.DocumentInput(document_id="bad", mime_type="application/pdf",
                                                            data=b"%PDF-1.4 garbage")], "documents[1].data"),
            ([_doc("empty", "   ", {})], "documents[0].text"),
            ([_doc("big", "x" * 3000, {})], "documents[0].text"),
            ([_doc("png", "x", {}, "image/png")], "documents[0].mime_type"),
        ]
        for docs, field in cases:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.IngestDocuments(pb.IngestDocumentsRequest(tenant="acme", collection="docs", documents=docs))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field in err.value.details()
        assert "'bad'" in (await _details(stub, cases[0][0]))
        after = (await stub.GetCollection(pb.GetCollectionRequest(tenant="acme", collection="docs"))).collection
        assert (after.document_count, after.chunk_count) == (before.document_count, before.chunk_count)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.IngestDocuments(pb.IngestDocumentsRequest(tenant="acme", collection="missing",
                                                                 documents=[_doc("a", "b", {})]))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def _details(stub, docs) -> str:
    try:
        await stub.IngestDocuments(pb.IngestDocumentsRequest(tenant="acme", collection="docs", documents=docs))
    except grpc.aio.AioRpcError as exc:
        return exc.details()
    return ""


async def test_ingest_stream_reports_progress(make_stack):
    async with make_stack("edge") as (stub, _):
        await stub.CreateCollection(pb.CreateCollectionRequest(tenant="acme", name="docs", sparse_enabled=True))
        docs = [_doc(k, t, m) for k, (t, m) in DOCS.items()]
        events = [e async for e in stub.IngestDocumentsStream(
            pb.IngestDocumentsStreamRequest(tenant="acme", collection="docs", documents=docs))]
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[-1] == "complete" and kinds.count("document") == 3
        stages = {e.progress.stage for e in events if e.HasField("progress")}
        assert stages == {pb.IngestProgress.STAGE_EMBEDDING, pb.IngestProgress.STAGE_INDEXING}
        assert len(events[-1].complete.results) == 3


async def test_search_modes_filters_threshold_rerank(make_stack, kind):
    async with make_stack(kind) as (stub, _):
        await _seed(stub)

        async def search(query, **options):
            return (await stub.Search(pb.SearchRequest(tenant="acme", collection="docs", query=query,
                                                       options=pb.SearchOptions(**options)))).results

        dense = await search("What is the capital of France?", mode=pb.SEARCH_MODE_DENSE, top_k=2)
        assert dense[0].chunk.document_id == "paris" and dense[0].stage_scores.HasField("dense")
        assert not dense[0].stage_scores.HasField("sparse") and dense[0].chunk.title == "Paris"
        sparse = await search("Brandenburg Gate", mode=pb.SEARCH_MODE_SPARSE)
        assert sparse[0].chunk.document_id == "berlin" and sparse[0].stage_scores.HasField("sparse")
        hybrid = await search("Eiffel Tower Paris", top_k=3)  # default: hybrid on a sparse collection
        assert hybrid[0].chunk.document_id == "paris"
        assert hybrid[0].stage_scores.HasField("fused") and hybrid[0].score == pytest.approx(
            hybrid[0].stage_scores.fused)
        assert 1.0 < hybrid[0].score <= 2.0  # the default DBSF: two stages, each scaled into about [0, 1]
        rrf = await search("Eiffel Tower Paris", fusion=pb.FUSION_RRF)
        assert rrf[0].chunk.document_id == "paris" and rrf[0].score <= 2 / 61 + 1e-6  # RRF with k=60
        only_es = await search("capital", filter=pb.Filter(must=[_eq("lang", "es")]))
        assert {r.chunk.document_id for r in only_es} == {"madrid"}
        year = pb.Condition(field=pb.FieldCondition(key="year", range=pb.Range(gte=2019)))
        recent = await search("capital", filter=pb.Filter(must=[year], must_not=[_eq("lang", "es")]))
        assert {r.chunk.document_id for r in recent} == {"paris"}
        either = await search("capital", filter=pb.Filter(should=[
            pb.Condition(document_ids=pb.DocumentIds(document_ids=["berlin"])),
            pb.Condition(field=pb.FieldCondition(key="lang", any_of=pb.ValueList(string_values=["es"])))]))
        assert {r.chunk.document_id for r in either} == {"berlin", "madrid"}
        high = await search("capital of France", mode=pb.SEARCH_MODE_DENSE, score_threshold=0.99)
        assert high == []
        reranked = await search("Which city has the Brandenburg Gate?", rerank=pb.RerankOptions(enabled=True))
        assert reranked[0].chunk.document_id == "berlin"
        assert reranked[0].stage_scores.HasField("rerank") and reranked[0].score == pytest.approx(
            reranked[0].stage_scores.rerank)
        for options, field in (
            ({"filter": pb.Filter(must=[pb.Condition(field=pb.FieldCondition(key="lang"))])}, "options.filter.must[0]"),
            ({"filter": pb.Filter(must=[pb.Condition(field=pb.FieldCondition(key="", equals=pb.Value(
                string_value="x")))])}, "options.filter.must[0].field.key"),
            ({"top_k": 0}, "options.top_k"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await search("capital", **options)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await search("   ")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_sparse_needs_a_sparse_collection(make_stack):
    async with make_stack("edge") as (stub, _):
        await _seed(stub, sparse=False)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Search(pb.SearchRequest(tenant="acme", collection="docs", query="x",
                                               options=pb.SearchOptions(mode=pb.SEARCH_MODE_HYBRID)))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "options.mode" in err.value.details()
        results = (await stub.Search(pb.SearchRequest(tenant="acme", collection="docs", query="Germany"))).results
        assert results[0].chunk.document_id == "berlin"


async def test_persists_across_restart(make_stack, tmp_path, kind):
    data = tmp_path / "persist"
    async with make_stack(kind, data_dir=data) as (stub, _):
        await _seed(stub)
    async with make_stack(kind, data_dir=data) as (stub, _):
        got = await stub.GetCollection(pb.GetCollectionRequest(tenant="acme", collection="docs"))
        assert got.collection.document_count == 3
        results = (await stub.Search(pb.SearchRequest(tenant="acme", collection="docs", query="Germany"))).results
        assert results[0].chunk.document_id == "berlin"


async def test_downstream_unavailable_names_the_service(make_stack):
    from genai_core.channels import create_channel

    dead = create_channel("127.0.0.1:1", default_timeout=5, max_attempts=2)
    try:
        async with make_stack("edge", channels={"inference": dead, "tokenizer": dead}) as (stub, _):
            await _seed(stub)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Answer(pb.AnswerRequest(tenant="acme", collection="docs", question="Capital of France?"))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "tokenizer" in err.value.details()
    finally:
        await dead.close()
