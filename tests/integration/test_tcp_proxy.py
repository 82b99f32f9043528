"""The test proxy's lost acknowledgement finds its pattern even when the request reaches it in two reads (CI saw a
multi-statement insert split so that no single read held `RETURNING notification_id`, and nothing was lost)."""

from __future__ import annotations

import socket
import threading

from support import TcpProxy, wait_for


def test_a_pattern_split_across_two_reads_still_trips_the_proxy() -> None:
    received = bytearray()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                received.extend(data)

    threading.Thread(target=serve, daemon=True).start()
    proxy = TcpProxy(port)
    proxy.start()
    try:
        proxy.lose_reply_then_cut(b"RETURNING notification_id")
        client = socket.create_connection(("127.0.0.1", proxy.port))
        with client:
            client.sendall(b"INSERT ... RETURNING notif")
            wait_for(lambda: len(received) == 26, 10, "the first half to reach the server")
            client.sendall(b"ication_id")
            wait_for(proxy.tripped.is_set, 10, "the proxy to see the pattern across the two reads")
    finally:
        proxy.cut()
        server.close()
