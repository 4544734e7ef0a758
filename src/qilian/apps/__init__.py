"""Scenario applications built on the module registry: each is pure module code plus SDK helpers, CLI and API."""
