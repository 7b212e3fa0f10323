"""Retrieval service: collections, ingestion, hybrid search and RAG answers with citations."""
