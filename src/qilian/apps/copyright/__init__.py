"""The copyright app (docs/apps/copyright.md)."""
