

def test_a_damaged_digest_is_undecided_not_a_mismatch() -> None:
    from unclip.safety.watermark import payload_matches

    expected = b"UNCL" + bytes([0b10101010, 0xFF, 0x00, 0x0F])
    flip = lambda data, bits: data[:4] + bytes(b ^ m for b, m in zip(data[4:], bits, strict=True))  # noqa: E731
    assert payload_matches(expected, expected) is True
    assert payload_matches(flip(expected, [0b11, 0, 0, 0]), expected) is True  # 2 bits
    assert payload_matches(flip(expected, [0b111, 0b1, 0, 0]), expected) is None  # 4 bits: cannot tell
    assert payload_matches(flip(expected, [0xFF, 0, 0, 0]), expected) is False  # 8 bits: another request
