"""Scenario apps built on the module registry (docs/apps/): each a pure module plus SDK helpers, CLI commands and
an API router.

The module registry (:mod:`qilian.execution.modules`) lists the apps' modules, and each app module subclasses the
registry's ``Module``: importing the registry first, here, lets either side be imported first without a
half-initialised module on the way."""

import qilian.execution.modules  # noqa: F401  (import order; see above)
