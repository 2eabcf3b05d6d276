"""Networks that look like the edge: sites behind firewalls, and sites far away.

``Host`` is a network namespace joined to this one by a veth pair: a machine
of its own on a link of its own. ``firewall()`` makes it what NAT makes a site:
it can open connections out, and every connection in is dropped (and counted).
``DelayRelay`` stands between a site and the scheduler and holds every chunk
for a while each way, since these machines have no kernel delay emulation
(``tc qdisc ... netem`` is unknown here). Traffic goes only to loopback and to
the namespaces made here.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

#: 10.213.N.0/24 per host: .1 on this side, .2 inside.
_SUBNET = "10.213"


def require_netns() -> None:
    """Skip without the privilege to make namespaces, unless JUPYTER_EDGE_REQUIRE_NETNS=1 (CI)."""
    why = None
    if os.geteuid() != 0:
        why = "making network namespaces needs root"
    elif not (shutil.which("ip") and shutil.which("iptables")):
        why = "needs iproute2's ip and iptables"
    else:
        probe = f"jeprobe{os.getpid()}"
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        if made.returncode != 0:
            why = f"ip netns add failed: {made.stderr.strip()}"
    if why is None:
        return
    if os.environ.get("JUPYTER_EDGE_REQUIRE_NETNS") == "1":
        pytest.fail(f"JUPYTER_EDGE_REQUIRE_NETNS=1 but {why}")
    pytest.skip(why)


def _run(*args: str) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class Host:
    """A network namespace with one veth link to this one."""

    def __init__(self, index: int):
        tag = f"{os.getpid() % 100000}x{index}"
        self.name = f"je{tag}"
        self.outside_if, self.inside_if = f"jeo{tag}"[:15], f"jei{tag}"[:15]
        self.gateway = f"{_SUBNET}.{index}.1"  # this side of the link: where the site finds the scheduler
        self.address = f"{_SUBNET}.{index}.2"  # the site's own address
        _run("ip", "netns", "add", self.name)
        try:
            _run("ip", "link", "add", self.outside_if, "type", "veth", "peer", "name", self.inside_if)
            _run("ip", "link", "set", self.inside_if, "netns", self.name)
            _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.outside_if)
            _run("ip", "link", "set", self.outside_if, "up")
            self.run("ip", "addr", "add", f"{self.address}/24", "dev", self.inside_if)
            self.run("ip", "link", "set", self.inside_if, "up")
            self.run("ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def run(self, *args: str) -> str:
        return _run("ip", "netns", "exec", self.name, *args)

    def command(self, args: list[str]) -> list[str]:
        """``args`` as a process inside this host."""
        return ["ip", "netns", "exec", self.name, *args]

    def firewall(self) -> None:
        """Outbound only, as behind NAT: what the site opened may answer, nothing else comes in."""
        self.run("iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
        self.run("iptables", "-A", "INPUT", "-i", self.inside_if, "-j", "DROP")

    def dropped(self) -> int:
        """Packets the firewall dropped: attempts to open a connection into this host."""
        table = self.run("iptables", "-L", "INPUT", "-v", "-n", "-x")
        for line in table.splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[2] == "DROP":
                return int(fields[0])
        raise AssertionError(f"no DROP rule in {self.name}'s firewall:\n{table}")

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.outside_if], capture_output=True)


def reachable(address: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``address:port`` opens from here."""
    import socket

    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_of(address: str) -> int:
    found = re.search(r":(\d+)$", address)
    assert found, f"no port in {address!r}"
    return int(found.group(1))


class DelayRelay:
    """A TCP relay on 127.0.0.1 that holds each chunk ``one_way`` seconds in each
    direction before passing it on, in order: a link ``2 * one_way`` round trip long."""

    def __init__(self, target_host: str, target_port: int, one_way: float):
        self.target = (target_host, target_port)
        self.one_way = one_way
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="delay-relay")
        self._thread.start()
        assert self._ready.wait(10), "the relay did not start"

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _relay(self, client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pump(client_reader, server_writer), self._pump(server_reader, client_writer))

    async def _pump(self, reader, writer) -> None:
        """Read as data comes; write each chunk once it has been held ``one_way``."""
        held: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await held.get()
                if chunk is None:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(chunk)
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        try:
            while chunk := await reader.read(65536):
                held.put_nowait((time.monotonic() + self.one_way, chunk))
            held.put_nowait((0.0, None))
            await delivering
        except (ConnectionError, OSError):
            pass
        finally:
            delivering.cancel()
            writer.close()

    def close(self) -> None:
        """Stop listening, end every relayed connection, and close the loop."""

        async def stop() -> None:
            self._server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self._loop)
        self._thread.join(10)
        self._loop.close()
