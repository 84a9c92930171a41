"""The grading channel: only lines signed with the kernel's key count; anything else is counted as forged."""

import os
import threading

from unittests.grading import channel

KEY = bytes(range(32))


def _read(*chunks: bytes) -> channel.Reader:
    read, write = os.pipe()
    reader = channel.Reader(read)

    def feed():
        for chunk in chunks:
            os.write(write, chunk)
        os.close(write)

    threading.Thread(target=feed).start()
    assert reader.join(10)
    return reader


def test_signed_lines_are_kept_in_order():
    reader = _read(channel.key_line(KEY), channel.signed_line(KEY, {"kind": "record", "grader": "test_block"}),
                   channel.signed_line(KEY, {"kind": "finish"}))
    assert reader.started and reader.forged == 0 and not reader.flooded
    assert reader.messages == [{"kind": "record", "grader": "test_block"}, {"kind": "finish"}]


def test_a_line_in_pieces_is_one_line():
    line = channel.signed_line(KEY, {"kind": "finish"})
    reader = _read(channel.key_line(KEY), line[:10], line[10:])
    assert reader.messages == [{"kind": "finish"}] and reader.forged == 0


def test_unsigned_wrongly_signed_and_early_lines_are_forged():
    other = bytes(32)
    reader = _read(channel.signed_line(KEY, {"kind": "finish"}),  # before the key
                   channel.key_line(KEY),
                   b'{"kind": "record", "grader": "test_block"}\n',  # no MAC
                   channel.signed_line(other, {"kind": "finish"}),  # another key
                   channel.key_line(other),  # a second key line is a forged line, not a new key
                   b"0" * 64 + b' {"kind": "finish"}\n')
    assert reader.messages == [] and reader.forged == 5


def test_a_flood_is_drained_but_not_kept():
    reader = _read(channel.key_line(KEY), b"x" * (channel.MAX_BYTES + 1), channel.signed_line(KEY, {"kind": "finish"}))
    assert reader.flooded and reader.messages == []


def test_a_huge_line_is_forged_not_kept():
    reader = _read(channel.key_line(KEY), b"y" * (channel.MAX_LINE + 10))
    assert reader.forged == 1 and reader.messages == []
