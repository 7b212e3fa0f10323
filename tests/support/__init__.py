"""Helpers shared by the cross-process (end-to-end) tests."""
