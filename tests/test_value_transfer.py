"""A large value's way back, piece by piece, with the real parts: the runner's spool
and a real socket pair (site/value_spool.py), the site's chunking
(site/transfer.py), and the notebook's unpickling as the chunks come (chunked.py).
The whole way through a fleet is in test_field_network.py and test_fleet.py."""

from __future__ import annotations

import gc
import os
import pickle
import socket
import threading
import time
from multiprocessing.connection import Connection

import numpy as np
import pytest

from jupyter_edge.chunked import StreamingValue, ValueIncomplete
from jupyter_edge.protocol import INLINE_RESULT
from jupyter_edge.site import value_spool
from jupyter_edge.site.transfer import chunk_count
from jupyter_edge.site.value_spool import ResultTooLarge, pickle_value, receive_value

MIB = 2**20

needs_memfd = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="memfd_create is Linux-only")


@pytest.fixture
def runner_socket():
    """The two ends of a runner's socket, as the site and the runner hold them."""
    site_end, runner_end = socket.socketpair()
    site, runner = Connection(site_end.detach()), Connection(runner_end.detach())
    yield site, runner
    site.close()
    runner.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def send_and_receive(value, runner_socket, limit=1 << 40):
    """``value`` from the runner's end to the site's, as an outcome and its value."""
    site, runner = runner_socket
    spool = pickle_value(value, limit)
    try:
        runner.send_bytes(b"outcome")
        spool.send(runner)
        follows, size = spool.follows, spool.size
    finally:
        spool.close()
    assert site.recv_bytes() == b"outcome"
    return follows, receive_value(site, follows, size)


def test_a_small_value_follows_on_the_socket(runner_socket):
    follows, received = send_and_receive({"answer": 42}, runner_socket)
    assert follows == value_spool.IN_BAND
    assert pickle.loads(received) == {"answer": 42}


@needs_memfd
def test_a_large_value_crosses_as_shared_memory_and_outlives_the_runners_fd(runner_socket):
    value = np.arange(4 * MIB, dtype=np.int64)  # 32 MiB
    before = open_fds()
    follows, received = send_and_receive(value, runner_socket)
    assert follows == value_spool.SHARED
    assert isinstance(received, memoryview) and received.readonly
    assert len(received) > value.nbytes
    # The runner closed its fd and the site closed the one it received: only the
    # mapping holds the memory (Python's mmap keeps a descriptor of its own).
    assert open_fds() <= before + 1, "a file descriptor was left open"
    np.testing.assert_array_equal(pickle.loads(received), value)
    del received
    gc.collect()
    assert open_fds() == before, "the mapping outlived the last view of it"


@needs_memfd
def test_the_site_can_send_after_the_runner_moved_on(runner_socket):
    """The runner may take its next execution while the site still sends the last value."""
    _, first = send_and_receive(b"a" * (2 * MIB), runner_socket)
    _, second = send_and_receive(b"b" * (2 * MIB), runner_socket)
    assert pickle.loads(first) == b"a" * (2 * MIB) and pickle.loads(second) == b"b" * (2 * MIB)


def test_the_boundary_is_the_inline_limit(runner_socket):
    small = pickle_value(b"x" * (INLINE_RESULT - 100), 1 << 30)
    large = pickle_value(b"x" * (INLINE_RESULT + 100), 1 << 30)
    try:
        assert small.follows == value_spool.IN_BAND
        assert large.follows == (value_spool.SHARED if hasattr(os, "memfd_create") else value_spool.IN_BAND)
    finally:
        small.close()
        large.close()


def test_a_value_over_the_limit_names_its_size_and_keeps_nothing():
    before = open_fds()
    with pytest.raises(ResultTooLarge) as raised:
        pickle_value(b"x" * (3 * MIB), limit=MIB)
    message = str(raised.value)
    size = len(pickle.dumps(b"x" * (3 * MIB), protocol=pickle.HIGHEST_PROTOCOL))
    assert f"{size:,} bytes" in message and f"{MIB:,} bytes" in message and "edge.result-limit" in message
    assert open_fds() == before, "the memfd of a value over the limit was kept"


def test_a_value_that_cannot_be_pickled_says_so():
    with pytest.raises(TypeError, match=r"the value \(lock\) cannot be sent back"):
        pickle_value(threading.Lock(), limit=MIB)


@pytest.mark.parametrize(
    ("nbytes", "chunks"),
    [(1, 1), (4 * MIB, 1), (4 * MIB + 15, 1), (5 * MIB - 1, 1), (5 * MIB, 2), (16 * MIB + 15, 4), (17 * MIB - 1, 4)],
)
def test_a_small_remainder_rides_with_the_last_chunk(nbytes, chunks):
    assert chunk_count(nbytes, 4 * MIB) == chunks


def arrive(value: StreamingValue, data: bytes, piece: int, pause: float = 0.0) -> None:
    for start in range(0, len(data), piece):
        value.add(bytearray(data[start : start + piece]))
        time.sleep(pause)


def test_a_value_is_unpickled_from_one_byte_chunks():
    data = pickle.dumps([os.urandom(3000), "é" * 100], protocol=pickle.HIGHEST_PROTOCOL)
    value = StreamingValue()
    arrive(value, data, 1)
    assert value.result(len(data)) == pickle.loads(data)


@pytest.mark.parametrize("piece", [4099, 65536, MIB + 3])
def test_a_value_is_unpickled_from_chunks_of_any_size(piece):
    expected = {"array": np.arange(300_000), "blob": os.urandom(200_000), "text": "é" * 1000}
    data = pickle.dumps(expected, protocol=pickle.HIGHEST_PROTOCOL)
    value = StreamingValue()
    arrive(value, data, piece)
    got = value.result(len(data))
    np.testing.assert_array_equal(got["array"], expected["array"])
    assert got["blob"] == expected["blob"] and got["text"] == expected["text"]


def test_unpickling_keeps_pace_with_the_chunks():
    """The copy happens while chunks still come: before the last one is in, all
    the others are read already."""
    data = pickle.dumps(os.urandom(8 * MIB), protocol=pickle.HIGHEST_PROTOCOL)
    value = StreamingValue()
    arrive(value, data[:-MIB], MIB)
    deadline = time.monotonic() + 10
    while value._chunks.consumed < len(data) - MIB and time.monotonic() < deadline:
        time.sleep(0.01)
    assert value._chunks.consumed == len(data) - MIB, "the unpickler waited for the last chunk to start"
    value.add(data[-MIB:])
    assert value.result(len(data)) == pickle.loads(data)
    assert value.chunks == 9


def test_a_value_cut_short_is_incomplete_not_a_hang():
    data = pickle.dumps(os.urandom(2 * MIB), protocol=pickle.HIGHEST_PROTOCOL)
    value = StreamingValue()
    value.add(data[:MIB])
    started = time.monotonic()
    with pytest.raises(ValueIncomplete, match=f"{MIB:,} of {len(data):,} bytes"):
        value.result(len(data))
    assert time.monotonic() - started < 5


def test_a_value_with_bytes_beyond_its_pickle_is_incomplete():
    data = pickle.dumps(b"x" * 1000, protocol=pickle.HIGHEST_PROTOCOL)
    value = StreamingValue()
    value.add(data + b"junk")
    with pytest.raises(ValueIncomplete):
        value.result(len(data) + 4)


def test_a_value_that_cannot_be_unpickled_here_raises_its_error():
    value = StreamingValue()
    data = b"\x80\x05" + b"\xff" * 100  # a protocol-5 header, then an unknown opcode
    value.add(data)
    with pytest.raises(pickle.UnpicklingError):
        value.result(len(data))


def test_a_discarded_value_frees_its_thread_at_once():
    value = StreamingValue()
    value.add(pickle.dumps(b"x" * MIB, protocol=pickle.HIGHEST_PROTOCOL)[:1000])
    value.discard()
    value._thread.join(timeout=5)
    assert not value._thread.is_alive(), "the unpickling thread waited on a value nobody wants"
