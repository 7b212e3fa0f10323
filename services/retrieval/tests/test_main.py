"""The composition root as a process: it serves, and on SIGTERM it drains, then closes the store and channels."""

from __future__ import annotations

import time

import grpc
import pytest
from genai.retrieval.v1 import retrieval_service_pb2 as pb
from genai.retrieval.v1 import retrieval_service_pb2_grpc as pb_grpc
from genai_retrieval.catalog import record
from genai_retrieval.store import EdgeStore, PointData
from genai_retrieval.types import Chunking, Collection, Distance

from tests.support.processes import free_port, log_tail, start_service, stop, wait_grpc_serving

pytestmark = pytest.mark.slow


def _seed(data_dir) -> None:
    store = EdgeStore(data_dir)
    now = time.time()
    store.create("acme", "docs", record(Collection(
        tenant="acme", name="docs", embedding_model="m", dimensions=2, distance=Distance.COSINE,
        sparse_enabled=False, chunking=Chunking(64, 8), create_time=now, update_time=now)))
    store.upsert("acme", "docs", [PointData(f"00000000-0000-0000-0000-00000000000{i}", [1.0, float(i)], None,
                                            {"document_id": f"d{i}", "chunk_index": 0, "text": "x"})
                                  for i in range(3)])
    store.close()


def test_sigterm_closes_the_store_after_the_drain(tmp_path):
    data, log = tmp_path / "data", tmp_path / "retrieval.log"
    _seed(data)
    port = free_port()
    env = {"GENAI_RETRIEVAL_PORT": str(port), "GENAI_RETRIEVAL_METRICS_PORT": "0",
           "GENAI_RETRIEVAL_DATA_DIR": str(data), "GENAI_RETRIEVAL_EMBEDDING_TARGET": "",
           "GENAI_RETRIEVAL_INFERENCE_TARGET": "", "GENAI_RETRIEVAL_TOKENIZER_TARGET": ""}
    proc = start_service("genai_retrieval", env, log)
    try:
        wait_grpc_serving(f"127.0.0.1:{port}", 60, proc=proc, log_path=log)

        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:  # the service opens the collection's shard
            got = pb_grpc.RetrievalServiceStub(channel).GetCollection(
                pb.GetCollectionRequest(tenant="acme", collection="docs"), timeout=30)
        assert got.collection.document_count == 3
    finally:
        code = stop(proc, 30)
    text = log.read_text(errors="replace")
    assert code == 0, log_tail(log)
    draining, closed, stopped = (text.find(s) for s in ("draining", "closed the vector store", "retrieval stopped"))
    assert -1 < draining < closed < stopped, log_tail(log)
    again = EdgeStore(data)  # the shard was closed: it opens again, whole
    try:
        assert again.count("acme", "docs", None) == 3
    finally:
        again.close()
