"""Sphinx configuration: the user guide and the reference of harness's public API (its docstrings).

Built by .ci/run with warnings as errors: `sphinx-build -W -b html docs docs/_build/html`."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "harness"
author = "the harness project"
copyright = "the harness project"
extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["_build", "lab-report"]
html_theme = "alabaster"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
default_role = "code"
nitpicky = False
