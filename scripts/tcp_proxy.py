"""A loopback TCP proxy that can be cut and restored: a real PostgreSQL made unreachable, for tests and drills."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """A loopback TCP forwarder the tests can cut and restore, to make a real store unreachable.

    `lose_reply_then_cut(pattern)` arms a lost acknowledgement instead: see there.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server: socket.socket | None = None
        self._links: list[socket.socket] = []
        self._lock = threading.Lock()
        self._armed: bytes | None = None
        # Set when an armed pattern went through: the request was sent and its reply is being discarded.
        self.tripped = threading.Event()

    def start(self) -> None:
        """Accept and forward connections (again)."""
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(32)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and sever the open ones: the store is gone."""
        self._cut(keep=None)

    def lose_reply_then_cut(self, pattern: bytes) -> None:
        """One lost acknowledgement: the first client message containing `pattern` reaches the server, but
        its reply never reaches the client; at that moment the proxy cuts (new connections refused, every
        other link severed, this client's side closed): the network died right after the request was sent.

        The link toward the server stays open (its replies discarded) until `cut()`, so the server runs
        the request to its end: what it commits is committed, and the client cannot know.
        """
        self.tripped.clear()
        self._armed = pattern

    def _cut(self, keep: socket.socket | None) -> None:
        with self._lock:
            if self._server is not None:
                with contextlib.suppress(OSError):
                    self._server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
                self._server.close()
                self._server = None
            for link in self._links:
                if link is keep:
                    continue
                with contextlib.suppress(OSError):
                    link.shutdown(socket.SHUT_RDWR)
                    link.close()
            self._links = [] if keep is None else [keep]

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links += [client, upstream]
            lost = threading.Event()  # this link's replies are discarded
            threading.Thread(target=self._request_pipe, args=(client, upstream, lost), daemon=True).start()
            threading.Thread(target=self._reply_pipe, args=(upstream, client, lost), daemon=True).start()

    def _request_pipe(self, client: socket.socket, upstream: socket.socket, lost: threading.Event) -> None:
        tail = b""  # the end of the previous chunk: a pattern split across two reads is still found
        try:
            while data := client.recv(65536):
                armed = self._armed
                trip = armed is not None and armed in tail + data
                if armed is not None:
                    tail = (tail + data)[-(len(armed) - 1) :] if len(armed) > 1 else b""
                if trip:
                    self._armed = None
                    lost.set()  # before the request goes: no byte of its reply may reach the client
                upstream.sendall(data)
                if trip:
                    self._cut(keep=upstream)
                    self.tripped.set()
                    return
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

    @staticmethod
    def _reply_pipe(upstream: socket.socket, client: socket.socket, lost: threading.Event) -> None:
        try:
            while data := upstream.recv(65536):
                if not lost.is_set():
                    client.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)
