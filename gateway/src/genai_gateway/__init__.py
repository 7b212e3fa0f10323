"""The HTTP gateway in front of every GenAI gRPC service."""
