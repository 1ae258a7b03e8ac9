"""Fake platform servers that answer as the platforms document."""
