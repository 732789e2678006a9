"""What the Python benchmarks share about the processes they start: a free port, waiting for a
port to open, and a process's resident memory."""

import socket
import time


def free_port():
    """A port the OS has just handed out (the caller's process binds it next)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    """Resident memory of `pid` in KiB (VmRSS), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def wait_port(port, deadline=30, poll=0.05):
    """Returns once 127.0.0.1:`port` accepts a connection; exits naming it after `deadline` s."""
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(poll)
    raise SystemExit(f"port {port} never opened")
