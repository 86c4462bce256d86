"""The HTTP ports `sglang_jenga.server` gives servers (no server started): outside the ranges where another
socket could take a port before the server binds it, and never the same one twice in a process."""

from __future__ import annotations

import socket

import pytest

from sglang_jenga import server


def test_ports_avoid_sglang_and_ephemeral_ranges_and_are_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "_handed_out", set())
    ports = [server.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    low, high = server._HTTP_PORTS
    assert all(low <= p <= high and p < server._ephemeral_low() for p in ports)  # sglang draws from 22000-29999


def test_a_port_something_is_bound_to_is_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "_handed_out", set())
    with socket.socket() as taken:
        port = server.free_port()
        taken.bind(("127.0.0.1", port))
        monkeypatch.setattr(server, "_handed_out", set())
        monkeypatch.setattr(server, "_HTTP_PORTS", (port, port))  # the only candidate is bound: bind(0) instead
        assert server.free_port() not in (port, 0)
