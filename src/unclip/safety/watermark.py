"""The invisible watermark: a 64-bit payload spread over a faint, smooth luma pattern.

    marked = embed_watermark(image, b"UNCL" + digest)      # every pixel moves by at most 2/255
    decode_watermark(marked) -> (b"UNCL..." , "as is", 1.0)

Each payload bit owns one of 64 fixed patterns: orthonormal, zero-mean, 64 x 64 pixel tiles of band-limited
noise (spatial frequencies 0.05-0.15 cycles per pixel, periods of 7 to 20 px). The mark is the sum of the
patterns, each signed by its bit, scaled and clipped to +-2, tiled over the image and added to R, G and B
alike, so only luma changes and the chroma subsampling of JPEG does not matter. Pixels move by at most
2/255 (rounding included), so the pixels an edit keeps stay within 2/255 of the input, and on the bundled
model's images PSNR against the unmarked image is about 45 dB. Noise of that strength and frequency is
invisible at any zoom; spread over a tile's ~300 frequencies, no frequency stands out as the old 8 px grid
did.

Decoding is a correlation detector: the luma's high-pass residual, weighted by the inverse of its local
energy (flat regions, where the mark is all there is, count most; edges and texture barely count), folded
onto one 64 x 64 tile, and correlated with each pattern at all 4,096 cyclic shifts at once by FFT. Folding
makes a crop (which only shifts the tile grid) free to undo; resizing is undone by trying the image scaled
back by 2, 4, 1/2 and to the sizes the server makes. The shift with the most pattern energy wins, the
payload bits are the signs there, and the image counts as marked when at most 3 of the 32 magic bits are
wrong. The energy does not depend on the signs, so on an unmarked image the bits at the chosen shift are
coin flips: a false match has a chance of 1.3e-6 per try (about 1e-5 per image).

Whether a found mark carries a given request's digest is weighed on the bits' correlations, not only their
signs: the 32 known magic bits say how strong the mark is against the noise at that shift, and each digest bit
then counts by how sure its sign is (`WatermarkRead.evidence`). Through heavy noise a genuine mark's digest can
have 8 or more wrong signs, each of them weak, so a mismatch is only declared on strong evidence.

`unclip eval watermark` measures strength, PSNR and survival (docs/safety.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = [
    "MAGIC",
    "MAX_CHANGE",
    "MIN_SIDE",
    "WatermarkRead",
    "decode_watermark",
    "embed_watermark",
    "payload_matches",
    "read_watermark",
    "same_payload",
    "watermark_delta",
]

MAGIC = b"UNCL"
WM_BITS = 64
TILE = 64
BAND = (0.05, 0.15)  # cycles per pixel: below JPEG's quantisation of fine detail, above most drawn shapes
STRENGTH = 2.5  # the summed patterns have unit RMS; this scale, clipped to MAX_CHANGE, gives ~1.5 RMS
MAX_CHANGE = 2.0  # no pixel moves further (in 8-bit steps)
MIN_SIDE = 256  # smaller images carry too few tiles for the mark to be read back reliably
MIN_DECODE_SIDE = 64  # (a copy halved from 256 px is scaled back before it is read)
MAX_DIGEST_ERRORS = 2
MIN_OTHER_ERRORS = 8  # another request's digest differs in 16 of 32 bits on average, in fewer than 8 0.35% of the time
MAX_CANDIDATE_SIDE = 2048  # marks are made at up to 1024 px (larger outpainted canvases are read as they are)
MAX_MAGIC_ERRORS = 3
# nats for "another digest" before a mismatch is declared: genuine marks read through noise that leaves 3
# magic bits wrong reached -7.5 in 1,000 simulated reads; another request's digest is below -10 for 98% of them
MIN_OTHER_EVIDENCE = 10.0
STANDARD_SIZES = (64, 128, 256, 512, 768, 1024)
_RESIDUAL_SIGMA = 4.0  # the high-pass that leaves the mark's band
_ENERGY_SIGMA = 4.0  # the neighbourhood over which local residual energy is measured
_NOISE_FLOOR = 2.0  # the residual energy a flat, marked region has on its own


def _bits(payload: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(payload, dtype=np.uint8)).astype(np.float64) * 2 - 1


@lru_cache(maxsize=1)
def _patterns() -> tuple[np.ndarray, np.ndarray]:
    """The 64 bit patterns (64 x 64 x 64, unit RMS, orthonormal) and their conjugate spectra."""
    rng = np.random.default_rng(0x554E434C)
    f = np.fft.fftfreq(TILE)
    radius = np.hypot(f[:, None], f[None, :])
    band = (radius >= BAND[0]) & (radius <= BAND[1])
    noise = rng.standard_normal((WM_BITS, TILE, TILE))
    fields = np.fft.ifft2(np.fft.fft2(noise) * band).real.reshape(WM_BITS, -1)
    q, _ = np.linalg.qr(fields.T)
    patterns = q.T.reshape(WM_BITS, TILE, TILE) * TILE
    return patterns, np.conj(np.fft.fft2(patterns))


@lru_cache(maxsize=64)
def _tile(payload: bytes) -> np.ndarray:
    patterns, _ = _patterns()
    mark = np.tensordot(_bits(payload), patterns, 1) / np.sqrt(WM_BITS)
    return np.clip(STRENGTH * mark, -MAX_CHANGE, MAX_CHANGE)


def watermark_delta(payload: bytes, width: int, height: int) -> np.ndarray:
    """The mark (height x width floats, |value| <= MAX_CHANGE) that `embed_watermark` adds to each channel."""
    tile = _tile(bytes(payload))
    return np.tile(tile, (height // TILE + 1, width // TILE + 1))[:height, :width]


def embed_watermark(image: Image.Image, payload: bytes) -> Image.Image:
    """`image` (RGB or RGBA, alpha kept) with the 8-byte `payload` marked; under 256 px a side: unchanged."""
    if len(payload) * 8 != WM_BITS:
        raise ValueError(f"the payload is {WM_BITS // 8} bytes, got {len(payload)}")
    if min(image.size) < MIN_SIDE:
        return image.copy()
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    delta = watermark_delta(payload, image.width, image.height)
    out = np.clip(np.round(rgb + delta[..., None]), 0, 255).astype(np.uint8)
    result = Image.fromarray(out, "RGB")
    if alpha is not None:
        result.putalpha(alpha)
    return result


def _folded_residual(rgb: np.ndarray) -> np.ndarray:
    """The luma residual, weighted by the inverse of its local energy and folded onto one tile."""
    y = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    r = y - ndimage.gaussian_filter(y, _RESIDUAL_SIGMA, mode="reflect")
    weight = 1.0 / (ndimage.gaussian_filter(r * r, _ENERGY_SIGMA, mode="reflect") + _NOISE_FLOOR)
    h, w = r.shape
    ph, pw = -h % TILE, -w % TILE
    num = np.pad(np.clip(r, -8, 8) * weight, ((0, ph), (0, pw)))
    den = np.pad(weight, ((0, ph), (0, pw)))

    def fold(a: np.ndarray) -> np.ndarray:
        return a.reshape(a.shape[0] // TILE, TILE, a.shape[1] // TILE, TILE).sum(axis=(0, 2))

    folded = fold(num) / np.maximum(fold(den), 1e-9)
    return folded - folded.mean()


@dataclass(frozen=True)
class WatermarkRead:
    """What `read_watermark` found: the payload (None: no mark), how, the share of the 32 magic bits that
    agree, and each of the 64 bits' correlation at the chosen shift (its sign is the bit)."""

    payload: bytes | None
    how: str
    agreement: float
    correlations: np.ndarray

    def evidence(self, expected: bytes) -> float:
        """Log-likelihood ratio, in nats, of `expected`'s digest against a random one (another request's):
        each bit's correlation is read as its sign times the mark's amplitude plus Gaussian noise, both
        measured on the magic bits. Near 0 when the digest bits are too noisy to tell; at most 32 ln 2."""
        signs = _bits(expected)
        known = self.correlations[:32] * signs[:32]
        amplitude, noise = float(known.mean()), float(known.std(ddof=1)) + 1e-12
        t = 2 * signs[32:] * self.correlations[32:] * amplitude / noise**2
        return float(np.sum(np.log(2) - np.logaddexp(0, -t)))


def _read(rgb: np.ndarray) -> tuple[int, np.ndarray]:
    """(magic bits wrong, the 64 bits' correlations) at the tile shift with the most pattern energy."""
    _, spectra = _patterns()
    corr = np.fft.ifft2(np.fft.fft2(_folded_residual(rgb))[None] * spectra).real  # bits x shift-y x shift-x
    k = int(np.argmax((corr**2).sum(axis=0)))
    c = corr[:, k // TILE, k % TILE]
    return int(np.sum((c[:32] > 0) != (_bits(MAGIC) > 0))), c


def _payload(correlations: np.ndarray) -> bytes:
    return np.packbits((correlations > 0).astype(np.uint8)).tobytes()


def _candidates(image: Image.Image, size_hint: int | None) -> Iterator[tuple[str, Image.Image]]:
    """The image as it is, then scaled back the ways it is likely to have been resized (made on demand)."""
    w, h = image.size
    yield "as is", image
    sizes: list[tuple[int, int]] = []
    if size_hint:
        sizes.append((size_hint, round(size_hint * h / w)))
    sizes += [(w * 2, h * 2), (w * 4, h * 4), (w // 2, h // 2)]
    if w == h:
        sizes += [(s, s) for s in STANDARD_SIZES]
    seen = {(w, h)}
    for size in sizes:
        if size in seen or min(size) < MIN_DECODE_SIDE or max(size) > MAX_CANDIDATE_SIDE or size[0] < w // 2:
            continue
        seen.add(size)
        yield f"resized to {size[0]}x{size[1]}", image.resize(size, Image.Resampling.BICUBIC)


def read_watermark(image: Image.Image, size_hint: int | None = None) -> WatermarkRead:
    """The mark in `image`, tried as it is and scaled back. `size_hint`: the width the image had when it
    was marked, if known."""
    rgb_image = image.convert("RGB")
    if min(rgb_image.size) < 32:
        return WatermarkRead(None, "too small", 0.0, np.zeros(WM_BITS))
    best = WatermarkRead(None, "not found", 0.0, np.zeros(WM_BITS))
    for how, candidate in _candidates(rgb_image, size_hint):
        errors, correlations = _read(np.asarray(candidate, dtype=np.float64))
        if errors <= MAX_MAGIC_ERRORS:
            return WatermarkRead(_payload(correlations), how, 1 - errors / 32, correlations)
        if 1 - errors / 32 > best.agreement:
            best = WatermarkRead(None, "not found", 1 - errors / 32, correlations)
    return best


def decode_watermark(image: Image.Image, size_hint: int | None = None) -> tuple[bytes | None, str, float]:
    """(payload or None, how it was found, share of the 32 magic bits that agree, 0..1); `read_watermark`
    as a tuple."""
    found = read_watermark(image, size_hint)
    return found.payload, found.how, found.agreement


def same_payload(found: bytes, expected: bytes) -> bool:
    """Whether a decoded payload is `expected`, allowing 2 wrong bits of the 32 after the magic (a bit or two
    can flip on busy photos; a random payload matches by chance 1.2e-7 of the time)."""
    a = np.unpackbits(np.frombuffer(found[4:], dtype=np.uint8))
    b = np.unpackbits(np.frombuffer(expected[4:], dtype=np.uint8))
    return len(a) == len(b) and int(np.sum(a != b)) <= MAX_DIGEST_ERRORS


def payload_matches(found: bytes | WatermarkRead, expected: bytes) -> bool | None:
    """`same_payload`, or None when the digest is too damaged to tell: 3 to 7 wrong bits (a mark read through
    heavy noise, or by rare chance another request's), or, given the read itself, wrong bits too weak to be
    sure of (`WatermarkRead.evidence` above -MIN_OTHER_EVIDENCE)."""
    read = found if isinstance(found, WatermarkRead) else None
    payload = read.payload if read is not None else found
    if payload is None:
        return None
    a = np.unpackbits(np.frombuffer(payload[4:], dtype=np.uint8))
    b = np.unpackbits(np.frombuffer(expected[4:], dtype=np.uint8))
    if len(a) != len(b):
        return False
    wrong = int(np.sum(a != b))
    if wrong <= MAX_DIGEST_ERRORS:
        return True
    if wrong < MIN_OTHER_ERRORS or (read is not None and read.evidence(expected) > -MIN_OTHER_EVIDENCE):
        return None
    return False
