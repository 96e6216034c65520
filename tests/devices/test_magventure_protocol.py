"""MagVenture framing: CRC-8, command encoders, length-based parser, device frames."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stimtrain.devices.errors import DeviceError
from stimtrain.devices.magventure.protocol import (
    BA_RATIOS,
    BURST_IPI_MS,
    TWIN_IPI_MS,
    AmplitudeFrame,
    Delays,
    FrameParser,
    LongStatus,
    ModeByte,
    ModeSettings,
    PageFrame,
    PulseFrame,
    Status,
    TemperatureFrame,
    TrainSettings,
    amplitude_command,
    crc8,
    decode_frame,
    enable_command,
    encode_frame,
    fire_command,
    get_mode_command,
    long_status_command,
    page_command,
    start_train_command,
    status_command,
)

SPEC_EXAMPLES = [
    (status_command(), "FE 01 00 00 FF"),
    (amplitude_command(50), "FE 02 01 32 C6 FF"),
    (enable_command(True), "FE 02 02 01 CF FF"),
    (enable_command(False), "FE 02 02 00 91 FF"),
    (fire_command(), "FE 02 03 01 0B FF"),
    (start_train_command(), "FE 01 04 61 FF"),
    (long_status_command(), "FE 01 05 3F FF"),
]


@pytest.mark.parametrize(("frame", "expected"), SPEC_EXAMPLES)
def test_encoders_give_the_spec_example_frames(frame, expected):
    assert frame == bytes.fromhex(expected)


@given(st.binary(min_size=1, max_size=32))
def test_crc_over_data_and_crc_is_zero(data):
    assert crc8(data + bytes([crc8(data)])) == 0


def test_crc_detects_any_single_bit_flip():
    data = bytes([0x05, 0x34, 0x01, 0xF2, 0xA3, 0x19, 0x3C, 0x32, 0x00])
    good = crc8(data)
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            assert crc8(bytes(flipped)) != good


def test_encode_frame_rejects_empty_and_oversized_data():
    with pytest.raises(ValueError, match="1–32 bytes"):
        encode_frame(b"")
    with pytest.raises(ValueError, match="got 33"):
        encode_frame(bytes(33))


def test_other_command_encoders():
    assert amplitude_command(30, 60) == encode_frame(bytes([1, 30, 60]))
    assert page_command("timing") == encode_frame(bytes([7, 2, 0]))
    assert page_command(7) == encode_frame(bytes([7, 7, 0]))
    assert get_mode_command() == encode_frame(bytes([9]) + bytes(10))
    train = TrainSettings(rate_hz=5.0, pulses_in_train=10, trains=20, iti_s=8.0)
    assert train.to_command() == encode_frame(bytes.fromhex("06 0032 000A 0014 0050"))
    delays = Delays(trigger_in_ms=1.5, trigger_out_ms=-2.0, charge_delay_ms=300)
    assert delays.to_command() == encode_frame(bytes.fromhex("08 000F FFEC 012C 00 00"))
    assert TrainSettings.from_command(train.to_command()[2:-2]) == train
    assert Delays.from_command(delays.to_command()[2:-2]) == delays


def test_command_encoders_refuse_bad_values():
    with pytest.raises(
        DeviceError, match=r"amplitude A: must be an integer 0–100 %, got 101"
    ):
        amplitude_command(101)
    with pytest.raises(DeviceError, match="amplitude B.*got 2.5"):
        amplitude_command(20, 2.5)
    with pytest.raises(DeviceError, match="page: 'settings' is not one of"):
        page_command("settings")
    with pytest.raises(DeviceError, match="pulses in train: 70000 does not fit"):
        TrainSettings(1.0, 70000, 1, 1.0).to_command()
    with pytest.raises(DeviceError, match="trigger-out delay"):
        Delays(trigger_out_ms=-4000.0).to_command()


def test_mode_byte_bits():
    byte = 0b011_1_11_10  # X100+Option, enabled, Biphasic Burst, Twin
    mode = ModeByte.from_byte(byte)
    assert mode == ModeByte("twin", "biphasic_burst", True, "X100+Option")
    assert mode.to_byte() == byte
    for value in range(0xC0):  # model codes 0–5
        assert ModeByte.from_byte(value).to_byte() == value
    with pytest.raises(DeviceError, match="model bits: unknown code 7"):
        ModeByte.from_byte(0xE0)


def test_status_frame_decodes_by_position():
    # X100, biphasic, enabled; serial 0x01F2A3; 31 °C; Cool-B65; A 50 %, B 0 %.
    data = bytes.fromhex("00 34 01 F2 A3 1F 3C 32 00")
    status = decode_frame(data)
    assert status == Status(
        mode=ModeByte("standard", "biphasic", True, "X100"),
        serial_number=0x01F2A3,
        temperature=31,
        coil_type=60,
        amplitude_a=50,
        amplitude_b=0,
    )
    assert status.coil_name == "Cool-B65"
    assert status.to_data() == data
    assert len(encode_frame(data)) == 13


def test_long_status_frame():
    data = bytes.fromhex("05 20 00 00 07 1A 00 28 00 28 00 64 64 02 01")
    long = decode_frame(data)
    assert isinstance(long, LongStatus)
    assert (long.mode.model, long.mode.enabled, long.temperature) == ("X100", False, 26)
    assert long.coil_name == "unknown"
    assert (long.original_amplitude_a, long.factor_a, long.factor_b) == (40, 100, 100)
    assert (long.page, long.running) == (2, True)
    assert long.to_data() == data
    assert len(encode_frame(data)) == 19


@pytest.mark.parametrize(
    "frame",
    [
        AmplitudeFrame(50, 25, ModeByte(enabled=True)),
        PulseFrame(120, 0, ModeByte(model="R30")),
        TemperatureFrame(38, 82, ModeByte(waveform="monophasic")),
        PageFrame(7, True),
    ],
)
def test_short_frames_round_trip(frame):
    data = frame.to_data()
    assert data[0] == frame.frame_id
    assert decode_frame(data) == frame
    if not isinstance(frame, PageFrame):
        assert len(encode_frame(data)) == 8


def test_mode_reply_is_index_coded():
    twin = ModeSettings(model="X100+Option", mode="twin", ipi_ms=1.0, ba_ratio=0.2)
    data = twin.to_data()
    # id, 0, model, mode, direction, waveform, burst index, IPI index LE, B/A index
    assert data == bytes([9, 0, 3, 2, 0, 1, 3, 0x04, 0x01, 96])
    assert decode_frame(data) == twin
    burst = ModeSettings(waveform="biphasic_burst", burst_pulses=5, ipi_ms=0.5)
    assert burst.to_data()[6:10] == bytes([0, 195, 0, 80])
    assert decode_frame(burst.to_data()) == burst
    plain = decode_frame(bytes([9, 0, 1, 0, 1, 1, 3, 7, 0, 0]))
    assert (plain.direction, plain.ipi_ms, plain.ba_ratio) == ("reverse", None, 5.0)


def test_mode_set_command_carries_values():
    settings = ModeSettings(
        model="X100", waveform="biphasic_burst", burst_pulses=3, ipi_ms=20.0
    )
    frame = settings.to_command()
    assert frame[2:-2] == bytes([9, 1, 1, 0, 0, 3, 2, 0x00, 200, 0x00, 100])
    assert ModeSettings.from_command(frame[2:-2]) == settings


def test_value_tables():
    assert len(TWIN_IPI_MS) == 261 and TWIN_IPI_MS[0] == 3000 and TWIN_IPI_MS[-1] == 1
    assert TWIN_IPI_MS[20] == 1000 and TWIN_IPI_MS[30] == 500
    assert TWIN_IPI_MS[70] == 100 and TWIN_IPI_MS[150] == 20 and TWIN_IPI_MS[170] == 10
    assert len(BURST_IPI_MS) == 196 and BURST_IPI_MS[0] == 100
    assert (
        BURST_IPI_MS[80] == 20 and BURST_IPI_MS[100] == 10 and BURST_IPI_MS[-1] == 0.5
    )
    assert len(BA_RATIOS) == 97 and BA_RATIOS[0] == 5.0 and BA_RATIOS[80] == 1.0
    for table in (TWIN_IPI_MS, BURST_IPI_MS, BA_RATIOS):
        assert all(a > b for a, b in zip(table, table[1:], strict=False))


def test_decode_frame_errors():
    with pytest.raises(DeviceError, match="unknown id 4"):
        decode_frame(bytes([4, 0, 0, 0]))
    with pytest.raises(DeviceError, match="frame id 1: expected 4 data bytes, got 3"):
        decode_frame(bytes([1, 50, 0]))
    with pytest.raises(DeviceError, match="empty"):
        decode_frame(b"")
    with pytest.raises(DeviceError, match="IPI: index 300 off the table"):
        decode_frame(bytes([9, 0, 3, 2, 0, 1, 3, 0x2C, 0x01, 0]))
    with pytest.raises(DeviceError, match="B/A ratio: index 97"):
        decode_frame(bytes([9, 0, 1, 0, 0, 1, 3, 0, 0, 97]))
    with pytest.raises(DeviceError, match="burst index: 4"):
        decode_frame(bytes([9, 0, 1, 0, 0, 1, 4, 0, 0, 0]))
    with pytest.raises(
        DeviceError, match="IPI \\(ms\\): 2.55 is not on the device grid"
    ):
        ModeSettings(mode="twin", ipi_ms=2.55).to_data()


# ------------------------------------------------------------------ parser
def _frames():
    return [
        Status(ModeByte(), 0xFFFEFF, 25, 60, 50, 0).to_data(),  # FF/FE inside
        AmplitudeFrame(50, 0, ModeByte(enabled=True)).to_data(),
        LongStatus(ModeByte(), 0xFF00FF, 30, 56, 20, 20).to_data(),
        PageFrame(2, True).to_data(),
    ]


def test_parser_reads_frames_byte_by_byte_with_ff_inside():
    frames = _frames()
    stream = b"".join(encode_frame(f) for f in frames)
    assert stream.count(0xFF) > len(frames)  # a split on 0xFF would break
    parser = FrameParser()
    out = []
    for byte in stream:
        out += parser.feed(bytes([byte]))
    assert out == frames
    assert (parser.dropped, parser.crc_errors, parser.pending) == (0, 0, 0)


def test_parser_finds_a_frame_whose_crc_is_ff():
    data = next(
        bytes([1, a, 0, 0x24])
        for a in range(256)
        if crc8(bytes([1, a, 0, 0x24])) == 0xFF
    )
    assert FrameParser().feed(encode_frame(data)) == [data]


def test_parser_drops_junk_and_bad_frames_and_resyncs():
    good = encode_frame(PageFrame(1, False).to_data())
    bad_crc = bytearray(encode_frame(AmplitudeFrame(1, 2, ModeByte()).to_data()))
    bad_crc[-2] ^= 0x01
    no_end = encode_frame(PageFrame(3, False).to_data())[:-1] + b"\x00"
    huge_len = bytes([0xFE, 0xF0])
    parser = FrameParser()
    out = parser.feed(b"\x00\x11" + bytes(bad_crc) + no_end + huge_len + good)
    assert out == [PageFrame(1, False).to_data()]
    assert parser.crc_errors == 1
    assert parser.dropped == 2 + len(bad_crc) + len(no_end) + len(huge_len)
    assert parser.pending == 0


def test_parser_keeps_an_incomplete_frame_until_reset():
    frame = encode_frame(AmplitudeFrame(50, 0, ModeByte()).to_data())
    parser = FrameParser()
    assert parser.feed(frame[:-1]) == []  # the end byte was dropped
    assert parser.pending == len(frame) - 1
    # The next frame completes the stale one wrongly; both get sorted out.
    assert parser.feed(frame) == [frame[2:-2]]
    assert parser.dropped == len(frame) - 1
    parser.feed(frame[:4])
    parser.reset()
    assert parser.pending == 0 and "incomplete" in parser.last_error


@given(st.lists(st.binary(max_size=6), min_size=1, max_size=6), st.randoms())
def test_parser_recovers_every_frame_between_junk(junk, rnd):
    frames = _frames()
    stream = b""
    for piece, frame in zip(junk, frames * 2, strict=False):
        # Junk without a start byte, so it cannot hide a real frame.
        stream += piece.replace(b"\xfe", b"\x00") + encode_frame(frame)
    cuts = sorted(rnd.sample(range(len(stream)), min(5, len(stream))))
    parser = FrameParser()
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += parser.feed(stream[a:b])
    assert out == (frames * 2)[: len(junk)]


def test_parser_survives_random_noise():
    rnd = random.Random(3)
    parser = FrameParser()
    noise = bytes(rnd.randrange(256) for _ in range(5000))
    for frame in parser.feed(noise):
        assert frame  # whatever passes has a valid CRC and end byte
    good = encode_frame(PageFrame(2, False).to_data())
    assert parser.feed(bytes(40) + good)[-1] == good[2:-2]
