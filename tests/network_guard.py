"""Run before anything else in a child process (``exec``'d by tests): every attempt to reach the network or to spawn
pip is written, with its call stack, to the file named by ``NETWORK_GUARD_LOG`` and then fails as if offline."""

import os
import socket
import subprocess
import traceback

_LOG = os.environ["NETWORK_GUARD_LOG"]
_LOCAL = {None, "localhost", "127.0.0.1", "::1", ""}


def _record(kind, detail):
    with open(_LOG, "a", encoding="utf-8") as f:
        f.write(f"=== {kind} {detail}\n{''.join(traceback.format_stack()[:-2])}\n")


def _blocked(kind):
    def guard(*args, **kwargs):
        host = args[1] if kind == "connect" else args[0]
        host = host[0] if isinstance(host, tuple) else host
        if host in _LOCAL or (isinstance(host, str) and host.startswith("/")):
            return _original[kind](*args, **kwargs)
        _record(kind, host)
        raise OSError(f"network blocked by the test guard ({kind} {host})")

    return guard


_original = {
    "connect": socket.socket.connect,
    "getaddrinfo": socket.getaddrinfo,
    "gethostbyname": socket.gethostbyname,
    "gethostbyname_ex": socket.gethostbyname_ex,
}
socket.socket.connect = _blocked("connect")
socket.getaddrinfo = _blocked("getaddrinfo")
socket.gethostbyname = _blocked("gethostbyname")
socket.gethostbyname_ex = _blocked("gethostbyname_ex")

_popen_init = subprocess.Popen.__init__


def _popen(self, args, *rest, **kwargs):
    text = " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)
    if "pip" in text.split() or " -m pip" in text:
        _record("pip", text)
        raise OSError("pip blocked by the test guard")
    return _popen_init(self, args, *rest, **kwargs)


subprocess.Popen.__init__ = _popen
