"""The embedding service: dense and sparse vectors and bi-encoder rerank over gRPC."""
