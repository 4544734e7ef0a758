"""Payments and settlement: a multi-asset ledger, delivery-versus-payment, escrow, FX payments and netting."""

# The module registry imports this package's module; loading the registry first means importing the module on its
# own (a test, the CLI) never meets a half-initialised registry.
import qilian.execution.modules  # noqa: F401
