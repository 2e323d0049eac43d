"""Example: a server that is a Python function (here an asyncio one) rather than a program.

`serve(function)` runs function(host, port) in a child process of its own (a coroutine function
under asyncio.run), waits until it listens, and stops it after the test, whatever it started.
"""
import asyncio
import socket

import pytest


async def shouting_echo(host: str, port: int) -> None:
    async def handle(reader, writer):
        writer.write((await reader.read(1024)).upper())
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(handle, host, port)
    async with server:
        await server.serve_forever()


@pytest.mark.capture
def test_an_asyncio_server_answers_and_closes(serve, wire):
    server = serve(shouting_echo)
    with wire(server.port, proto="tcp") as capture:
        with socket.create_connection((server.host, server.port)) as connection:
            connection.sendall(b"ping")
            assert connection.recv(1024) == b"PING"
            assert connection.recv(1024) == b""        # the server closed: its FIN came
    capture.conversation().should_close_gracefully().should_send(client=4, server=4)
