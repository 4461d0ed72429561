"""The frame decoder and the JSON codec on their own."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bicameral.protocol import Limits, RPCError
from bicameral.protocol._dispatcher import Dispatcher, never_suspends
from bicameral.protocol._framing import (
    EncodeError,
    FrameDecoder,
    FrameTooLarge,
    ParseError,
    decode,
    encode,
)


def frames_of(decoder: FrameDecoder) -> list[bytes]:
    out = []
    while (frame := decoder.next_frame()) is not None:
        out.append(frame)
    return out


def test_decoder_cuts_lines_and_strips_crlf() -> None:
    decoder = FrameDecoder(100)
    decoder.feed(b"a\r\nb\n\ncc")
    assert frames_of(decoder) == [b"a", b"b", b""]
    assert decoder.has_partial()
    decoder.feed(b"c\n")
    assert frames_of(decoder) == [b"ccc"]
    assert not decoder.has_partial()


def test_decoder_limit_applies_before_the_newline_arrives() -> None:
    decoder = FrameDecoder(10)
    decoder.feed(b"x" * 10)
    assert decoder.next_frame() is None
    decoder.feed(b"x")
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()


def test_decoder_limit_applies_to_a_whole_line_in_one_chunk() -> None:
    decoder = FrameDecoder(10)
    decoder.feed(b"ok\n" + b"y" * 11 + b"\n")
    assert decoder.next_frame() == b"ok"
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()


def test_take_buffered_returns_what_was_not_framed() -> None:
    decoder = FrameDecoder(100)
    decoder.feed(b"one\ntwo\nthr")
    assert decoder.next_frame() == b"one"
    assert decoder.take_buffered() == b"two\nthr"
    assert not decoder.has_partial()


@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=8), st.data())
def test_decoder_output_does_not_depend_on_chunking(
    lines: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder(1000)
    got: list[bytes] = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        decoder.feed(stream[previous:cut])
        previous = cut
        got.extend(frames_of(decoder))
    assert got == [line.removesuffix(b"\r") for line in lines]


def test_decode_falls_back_for_what_orjson_refuses() -> None:
    assert decode(b"123456789012345678901234567890") == 123456789012345678901234567890
    assert decode(b'"\\ud800"') == "\ud800"
    for bad in (b"\xff", b"NaN", b"[1e400]", b"", b"[" * 10000, b"1" * 5000):
        with pytest.raises(ParseError):
            decode(bad)


def test_encode_is_compact_and_falls_back() -> None:
    assert encode({"a": [1, "é"]}) == '{"a":[1,"é"]}\n'.encode()
    assert encode(10**30) == b"1000000000000000000000000000000\n"
    assert encode("\ud800") == b'"\\ud800"\n'
    with pytest.raises(EncodeError):
        encode(object())
    with pytest.raises(EncodeError):
        encode({"x": 10**30, "y": float("nan")})


def test_never_suspends_is_conservative() -> None:
    async def plain(params: object, conn: object) -> object:
        return params

    async def awaits(params: object, conn: object) -> object:
        return await plain(params, conn)

    async def async_with(params: object, conn: object) -> object:
        async with conn:  # type: ignore[attr-defined]
            return None

    def sync(params: object, conn: object) -> object:
        return params

    class Handlers:
        async def method(self, params: object, conn: object) -> object:
            return params

    assert never_suspends(plain)
    assert never_suspends(Handlers().method)
    assert not never_suspends(awaits)
    assert not never_suspends(async_with)
    assert not never_suspends(sync)
    assert not never_suspends(functools.partial(plain))
    d = Dispatcher()
    d.add("a", plain)
    d.add("b", awaits)
    assert d.immediate("a")
    assert not d.immediate("b")
    assert d.immediate("missing")  # method-not-found is answered at once
    assert "a" in d
    assert d.names() == ["a", "b"]


def test_rpc_error_round_trips_through_its_dict() -> None:
    error = RPCError(-32602, "bad", {"k": 1})
    assert error.to_dict() == {"code": -32602, "message": "bad", "data": {"k": 1}}
    again = RPCError.from_dict(error.to_dict())
    assert (again.code, again.message, again.data) == (-32602, "bad", {"k": 1})
    assert RPCError.from_dict("junk").code == -32603
    assert str(error) == "[-32602] bad"


def test_limits_defaults_are_specs() -> None:
    limits = Limits()
    assert limits.max_frame == 16 * 1024 * 1024
    assert limits.max_in_flight == 64
    assert limits.max_connections == 1024
    assert limits.partial_frame_timeout == 30.0
    with pytest.raises(ValueError, match="max_in_flight"):
        Limits(max_in_flight=0)
    with pytest.raises(ValueError, match="partial_frame_timeout"):
        Limits(partial_frame_timeout=0)
