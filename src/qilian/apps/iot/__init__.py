"""The iot app (docs/apps/iot.md)."""
