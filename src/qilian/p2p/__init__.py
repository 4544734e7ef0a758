"""Peer-to-peer transport: mutual TLS 1.3 between the nodes of one network, framed canonical messages.

IO lives here (sockets, TLS); the message formats in :mod:`qilian.p2p.messages` are plain structures."""
