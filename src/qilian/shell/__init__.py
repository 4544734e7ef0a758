"""The node shell, written against ports: the consensus, mempool and block-sync reactors that the node runs over
asyncio, TLS, files and RocksDB (:mod:`qilian.node.consensus`) and the simulator runs over an in-memory world that can
crash between any two writes (:mod:`qilian.sim`). No IO of its own; see :mod:`qilian.shell.ports`."""
