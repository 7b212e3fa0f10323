"""The evaluation service: benchmark, retrieval and RAG evaluations as stored, comparable runs."""
