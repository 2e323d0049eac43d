"""The `harness` command's entry point. The command line is imported here, under a guard: Ctrl-C while
it loads (its first 50-100 ms) ends it with the same one line and status as Ctrl-C at any later moment,
not with a traceback from whichever import it landed in."""
import sys

INTERRUPTED = 130


def main() -> int:
    try:
        from harness.cli import main as run
        return run()
    except KeyboardInterrupt:
        # What harness.cli.main does not see: the interrupt before its own handling began, or after it ended.
        sys.stderr.write("harness: interrupted\n")
        return INTERRUPTED
