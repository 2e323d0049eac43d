"""harness: run socket programs, capture their traffic, and assert on what the wire showed."""

__version__ = "0.1.0"
