"""Build harness.analysis._speedups, the summary path's per-packet work in C, or say why it was not built.

Everything else about the package is in pyproject.toml. The extension is optional: without a C
compiler or Python's headers the install still succeeds and harness runs the same analysis in pure
Python, several times slower. It does not do so silently: the reason is written beside the package
(harness/analysis/_speedups.unavailable), printed here, and reported by `harness --version`, `harness doctor`
and, once, by the first command that reads a capture.
"""
import os
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REASON_FILE = "_speedups.unavailable"
HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS_LIST = os.path.join(HERE, "harness", "run", "tools.txt")


def build_packages():
    """The Debian packages of the build tools, from harness/run/tools.txt (the list setup.sh installs from)."""
    packages = []
    with open(TOOLS_LIST, encoding="utf-8") as rows:
        for row in rows:
            fields = row.split()
            if len(fields) >= 4 and not row.startswith("#") and fields[3] == "build":
                packages += [p for p in fields[2].split(",") if p not in packages]
    return packages


class BuildOptionalSpeedups(build_ext):
    def build_extension(self, ext):
        package_dirs = [os.path.dirname(self.get_ext_fullpath(ext.name))]
        in_source = os.path.join(HERE, *ext.name.split(".")[:-1])
        if getattr(self, "editable_mode", False) or self.inplace:
            package_dirs.append(in_source)    # an editable install imports the package from the checkout
        try:
            super().build_extension(ext)
        except Exception as error:  # the compiler's or distutils' failure, whichever it is
            reason = " ".join(str(error).split()) or type(error).__name__
            for directory in package_dirs:
                os.makedirs(directory, exist_ok=True)
                with open(os.path.join(directory, REASON_FILE), "w", encoding="utf-8") as out:
                    out.write(f"building {ext.name} on Python {sys.version.split()[0]} failed: {reason}\n")
            stale = os.path.join(in_source, ext.name.rsplit(".", 1)[-1] + sysconfig.get_config_var("EXT_SUFFIX"))
            if in_source in package_dirs and os.path.exists(stale):
                os.unlink(stale)     # an older build must not stand in for the source it no longer matches
            sys.stderr.write(f"\n*** harness: {ext.name} was not built ({reason}); harness will run in "
                             f"pure Python, several times slower. Install a C compiler and Python's "
                             f"headers (apt-get install -y {' '.join(build_packages())}) and reinstall. ***\n\n")
            return
        for directory in package_dirs:
            if os.path.exists(os.path.join(directory, REASON_FILE)):
                os.unlink(os.path.join(directory, REASON_FILE))


setup(
    # optional: setuptools then copies no missing extension into an editable install's checkout.
    ext_modules=[Extension("harness.analysis._speedups", ["harness/analysis/_speedups.c"], optional=True)],
    cmdclass={"build_ext": BuildOptionalSpeedups},
)
