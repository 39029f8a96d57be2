"""Does a Memex process listen on a network port? Read from Linux's /proc: the socket inodes the
process holds (/proc/self/fd) against the sockets of /proc/net/{tcp,tcp6,udp,udp6}.

    python -m tests.net_probe engine DB    a scripted agent step with real memory effects
    python -m tests.net_probe desktop DB   the desktop window (offscreen), one scripted step

Each prints one JSON line: "listening" (this process's TCP sockets in LISTEN and bound UDP
sockets after the run), "python_sockets" (Internet sockets Python code made or bound during it,
from the audit hook), and "control": what the same check finds once the probe itself listens
on 127.0.0.1 (TCP and UDP), so a check that can never see anything fails the test too.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

TCP_LISTEN = "0A"
NET_TABLES = ("tcp", "tcp6", "udp", "udp6")
_SOCKET = re.compile(r"socket:\[(\d+)\]")


def socket_inodes(pid: str = "self") -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        match = _SOCKET.fullmatch(target)
        if match:
            inodes.add(int(match[1]))
    return inodes


def listening_sockets(pid: str = "self") -> list[str]:
    """This process's sockets that accept from the network: TCP in LISTEN, any bound UDP
    socket (UDP has no listen; a bound one receives). "table local-address state" each."""
    mine = socket_inodes(pid)
    found = []
    for table in NET_TABLES:
        try:  # /proc/<pid>/net: the tables of the process's own network namespace
            text = Path(f"/proc/{pid}/net/{table}").read_text(encoding="ascii")
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if inode in mine and (table.startswith("udp") or state == TCP_LISTEN):
                found.append(f"{table} {local} {state}")
    return found


_python_sockets: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.__new__" and args[1] in (socket.AF_INET, socket.AF_INET6):
        _python_sockets.append(f"new family={args[1]} type={args[2]}")
    elif event == "socket.bind" and args[0].family in (socket.AF_INET, socket.AF_INET6):
        _python_sockets.append(f"bind {args[1]!r}")


def _control() -> list[str]:
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        return listening_sockets()


def _script() -> list[dict[str, Any]]:
    from engine.llm.scripted import call

    return [
        call("core_memory_append", heartbeat=True, section="human", content="Name: Ada"),
        call("archival_memory_insert", heartbeat=True, content="Ada keeps bees"),
        call("archival_memory_search", heartbeat=True, query="bees"),
        call("conversation_search", heartbeat=True, query="Ada"),
        call("send_message", message="Hello Ada."),
    ]


def run_engine(db: str) -> dict[str, Any]:
    from engine import MemGPTAgent, Persona
    from engine.llm.scripted import ScriptedClient
    from engine.store.db import open_store

    with open_store(db) as store:
        agent = MemGPTAgent(Persona("Sam", "d"), store, ScriptedClient(_script()), name="sam")
        result = agent.step("Hi, I am Ada and I keep bees.")
        assert result.message == "Hello Ada.", result
        assert agent.archival.count() == 1 and agent.core_memory["human"] == "Name: Ada"
        return {"listening": listening_sockets()}


def run_desktop(db: str) -> dict[str, Any]:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from desktop.main_window import MainWindow
    from desktop.session import EngineSession
    from desktop.settings import Settings, window_state_path
    from engine.llm.scripted import ScriptedClient
    from engine.store.embed import default_embedder

    app = QApplication([])
    client = ScriptedClient(_script(), n_ctx=4096)
    embedder = default_embedder()
    window = MainWindow(
        Settings(db_path=db),
        lambda s: EngineSession(s, lambda _: client, lambda _: embedder, close_models=False),
        lambda _: None,
    )
    window.show()

    def wait_until(done: Any, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            app.processEvents()
            time.sleep(0.01)

    wait_until(lambda: window.loaded or window.error_box is not None, "the window to load")
    assert window.loaded, window.error_box.text()
    window.input.setPlainText("Hi, I am Ada and I keep bees.")
    QTest.keyClick(window.input, Qt.Key.Key_Return)
    wait_until(lambda: client.remaining == 0, "the step to start")
    wait_until(lambda: not window.stepping and not window.worker.busy, "the step to end")
    listening = listening_sockets()
    window.close()
    wait_until(window_state_path().exists, "window.json")
    app.processEvents()
    return {"listening": listening, "window_json": oct(os.stat(window_state_path()).st_mode)}


def main(mode: str, db: str) -> None:
    sys.addaudithook(_audit)
    report = run_engine(db) if mode == "engine" else run_desktop(db)
    report["python_sockets"] = list(_python_sockets)
    report["control"] = _control()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
