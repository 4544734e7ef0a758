"""The node shell's limits live with the shell (:mod:`qilian.shell.limits`), which the node and the simulator both
run; this module keeps the old import path."""

from qilian.shell.limits import *  # noqa: F403
from qilian.shell.limits import check_chain_params

__all__ = ["check_chain_params"]
