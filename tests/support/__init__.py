"""What the tests share and are not tests themselves: builders of captures and packets (pcapbuild,
packets, tcpgen), tshark's view of a capture (tshark_view), /proc watching (procfs), and the
system tools a test needs (needs). Imported as `from support import ...`: tests/conftest.py's
directory is on the path, as pytest puts it there."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]      # the checkout: captures/, bench/, scripts/ beside tests/
