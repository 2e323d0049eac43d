"""A minimal HTTP client that aborts: it reads part of the response, then closes with SO_LINGER 0.

    python _linger0_client.py HOST PORT PATH BYTES

Sends "GET PATH HTTP/1.0", reads until at least BYTES bytes of the response have arrived, sets
SO_LINGER {on, 0 s} and closes: the kernel discards what is unsent or unread and sends RST instead
of FIN. The receive buffer is kept small so the server is still mid-response when this happens.
Prints "aborted after N bytes". Used by _gen_abort-linger0.py (no Debian program does this on cue).
"""
import socket
import struct
import sys

RCVBUF = 8192  # the kernel doubles it; a small window keeps the server mid-response


def main() -> int:
    host, port, path, want = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.settimeout(20)
    sock.connect((host, port))
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
    got = 0
    while got < want:
        chunk = sock.recv(4096)
        if not chunk:
            print(f"server closed after {got} bytes, before the abort", file=sys.stderr)
            return 2
        got += len(chunk)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    print(f"aborted after {got} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
