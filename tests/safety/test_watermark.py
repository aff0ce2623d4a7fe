import numpy as np
import pytest

from unclip.safety.watermark import WatermarkRead


def test_a_damaged_digest_is_undecided_not_a_mismatch() -> None:
    from unclip.safety.watermark import payload_matches

    expected = b"UNCL" + bytes([0b10101010, 0xFF, 0x00, 0x0F])
    flip = lambda data, bits: data[:4] + bytes(b ^ m for b, m in zip(data[4:], bits, strict=True))  # noqa: E731
    assert payload_matches(expected, expected) is True
    assert payload_matches(flip(expected, [0b11, 0, 0, 0]), expected) is True  # 2 bits
    assert payload_matches(flip(expected, [0b111, 0b1, 0, 0]), expected) is None  # 4 bits: cannot tell
    assert payload_matches(flip(expected, [0xFF, 0, 0, 0]), expected) is False  # 8 bits: another request


def _read_of(payload: bytes, amplitude: float, noise: float, weak_flips: int, seed: int = 0) -> WatermarkRead:
    """A read of `payload` whose correlations are its signs times `amplitude` plus noise, with the first
    `weak_flips` digest bits flipped but barely (what heavy noise does to a genuine mark)."""
    signs = np.unpackbits(np.frombuffer(payload, dtype=np.uint8)).astype(float) * 2 - 1
    c = signs * amplitude + np.random.default_rng(seed).normal(0, noise, 64)
    c[:32] = np.where(c[:32] * signs[:32] > 0, c[:32], signs[:32] * amplitude)  # the magic reads right
    c[32 : 32 + weak_flips] = -signs[32 : 32 + weak_flips] * 0.05 * amplitude
    bits = (c > 0).astype(np.uint8)
    return WatermarkRead(np.packbits(bits).tobytes(), "as is", 1.0, c)


def test_a_mismatch_needs_strong_evidence_not_only_wrong_signs() -> None:
    from unclip.safety.provenance import payload_for
    from unclip.safety.watermark import payload_matches, same_payload

    mine, other = payload_for("req_mine"), payload_for("req_other")
    noisy = _read_of(mine, amplitude=1.0, noise=0.6, weak_flips=9)
    assert not same_payload(noisy.payload, mine)
    assert payload_matches(noisy.payload, mine) is False  # the signs alone say another request
    assert noisy.evidence(mine) > -10
    assert payload_matches(noisy, mine) is None  # weighed, the wrong bits are too weak to tell
    clean = _read_of(other, amplitude=1.0, noise=0.2, weak_flips=0)
    assert clean.evidence(mine) < -10 and payload_matches(clean, mine) is False
    assert payload_matches(clean, other) is True and clean.evidence(other) > 10


@pytest.mark.parametrize("seed", [83, 191, 333, 356])
def test_a_genuine_mark_read_through_heavy_noise_is_not_called_another_request(seed: int) -> None:
    """Marked images under strong smooth noise where the mark is found with 2-3 magic bits wrong and 8 or
    more wrong digest bits (about 6% of such reads in simulation): the request id is undecided, not denied."""
    from PIL import Image
    from scipy import ndimage

    from unclip.safety.provenance import payload_for
    from unclip.safety.watermark import embed_watermark, payload_matches, read_watermark

    rng = np.random.default_rng(seed)
    noise = np.stack([ndimage.gaussian_filter(rng.standard_normal((256, 256)), 2) for _ in range(3)], -1)
    image = Image.fromarray(np.clip(128 + noise / noise.std() * 20, 0, 255).astype(np.uint8))
    mine = payload_for(f"req_{seed}")
    found = read_watermark(embed_watermark(image, mine), 256)
    assert found.payload is not None and found.how == "as is"
    assert payload_matches(found.payload, mine) is False  # the signs alone: 8 or more digest bits wrong
    assert payload_matches(found, mine) is None
