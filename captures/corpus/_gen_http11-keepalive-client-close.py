"""http11-keepalive-client-close.pcapng: curl fetches two files over one keep-alive connection (host 127.0.0.1).

    python captures/corpus/_gen_http11-keepalive-client-close.py [--out DIR]

The server is python's http.server run with -p HTTP/1.1, so it keeps the connection open between
requests; curl sends both requests on it and closes first when it exits.
Capture: dumpcap on lo, filter "tcp port P" (P picked by the kernel), probes to 127.0.0.1, start and end proven.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import arguments, keepalive_two_urls, main_wrapper  # noqa: E402

NAME = "http11-keepalive-client-close.pcapng"


def generate(argv=None) -> int:
    args = arguments(__doc__, argv)
    print(f"{NAME}: {keepalive_two_urls(NAME, args.out, '127.0.0.1')}")
    return 0


if __name__ == "__main__":
    main_wrapper(lambda: generate())
