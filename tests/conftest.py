"""The test suite: unit/ is pure (readers, analysis, rendering, the command line on saved captures),
live/ captures, runs subjects and builds namespaces (marked `capture` where it needs to capture),
examples/ shows the plugin as a user writes with it, and support/ holds what they share.

`pytest tests/unit` (or `nox`, on other interpreters) runs the pure part alone."""
