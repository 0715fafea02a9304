"""Unit and property tests of the session protocol pieces (quoting, capping, marker parsing)."""

from __future__ import annotations

import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from orchard_envs.sandbox.shell import CappedBuffer, _MarkerStream, bash_quote

MARKER = b"\x1eORCHARDdeadbeef "


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
def test_bash_quote_round_trips_through_real_bash(text):
    result = subprocess.run(["bash", "-c", f"printf '%s' {bash_quote(text)}"], capture_output=True)
    assert result.stdout.decode() == text


@given(st.lists(st.binary(max_size=300), max_size=30), st.integers(min_value=8, max_value=2000))
def test_capped_buffer_keeps_everything_or_marks_truncation(chunks, cap):
    buffer = CappedBuffer(cap)
    for chunk in chunks:
        buffer.feed(chunk)
    data = b"".join(chunks)
    if len(data) <= buffer.head_cap:
        assert not buffer.truncated
        assert buffer.text() == data.decode("utf-8", errors="replace")
    if buffer.truncated:
        assert f"bytes omitted of {len(data)}" in buffer.text()


@given(st.binary(max_size=500).filter(lambda b: MARKER not in b), st.data())
def test_marker_is_found_however_the_stream_is_split(payload, data):
    stream = payload + MARKER + b"0 R/work dir\n" + b"late output"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    parser = _MarkerStream(MARKER, 1 << 20)
    start = 0
    for cut in [*cuts, len(stream)]:
        parser.feed(stream[start:cut])
        start = cut
    assert parser.line == b"0 R/work dir"
    assert parser.buffer.text() == payload.decode("utf-8", errors="replace")
