"""Government registries: records changed only through applications approved by the departments of a policy."""

# The module registry imports this package's module; loading the registry first means importing the module on its
# own (a test, the CLI) never meets a half-initialised registry.
import qilian.execution.modules  # noqa: F401
