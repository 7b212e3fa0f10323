"""Shared bootstrap for every GenAI gRPC service (see README "Shared core")."""
