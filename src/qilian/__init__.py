"""Qilian (齐链): a consortium blockchain platform in Python."""

__version__ = "0.1.0"
