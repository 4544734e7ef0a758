"""The chain indexer (IO): secondary indexes over committed blocks, in SQLite beside the node's data."""
