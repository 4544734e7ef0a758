"""Digital identity: did:qilian DID documents in chain state, W3C Verifiable Credentials, status lists."""

# The module registry imports this package's module; loading the registry first means importing the module on its
# own (a test, the CLI) never meets a half-initialised registry.
import qilian.execution.modules  # noqa: F401
