"""The trace app (docs/apps/trace.md)."""
