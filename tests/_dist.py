"""Helpers for tests that start several processes."""
import socket


def free_port() -> int:
    """A TCP port on localhost nobody listens on (for MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
