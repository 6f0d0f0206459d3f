"""A TCP proxy a test puts between two nodes, to cut the link and heal it again.

Each accepted connection is relayed to the upstream address, byte for byte, by two threads.
`cut()` closes every relayed connection and closes each new one at once (as a network
partition looks to both ends once their connections break); `heal()` relays again.
"""

from __future__ import annotations

import socket
import threading


class FaultProxy:
    def __init__(self, upstream: tuple[str, int] | None):
        """`upstream` may be set later (before the first connection): the proxy's own port
        is then chosen before the upstream's."""
        self.upstream = upstream
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._cut = False
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if self._cut or self._closed:
                    client.close()
                    continue
            try:
                if self.upstream is None:
                    raise OSError("no upstream yet")
                server = socket.create_connection(self.upstream, timeout=2)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                # Cut while connecting upstream: this connection must not outlive the cut.
                if self._cut or self._closed:
                    client.close()
                    server.close()
                    continue
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._relay, args=(source, sink), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            open_now, self._open = self._open, []
        for end in open_now:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def heal(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.cut()
        self.listener.close()
