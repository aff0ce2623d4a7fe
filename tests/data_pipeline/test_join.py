"""Joining the Iconify sets to emojibase by code point (and by name where a set has no chars.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unclip.data.emoji import Icon, base_hexcode, join_icons, load_emojibase, load_holdout, normalize_hexcode
from unclip.data.render import render
from unclip.data.sources import fetch_all

from .conftest import HOLDOUT


@pytest.fixture(scope="module")
def joined(cache_dir: Path, no_npm: None) -> tuple[list[Icon], dict, dict]:
    style_dirs, emojibase_dir = fetch_all(cache_dir / "npm")
    entries = load_emojibase(emojibase_dir, ("en", "de", "ja"))
    icons, stats = join_icons(style_dirs, entries)
    return icons, stats, entries


def by(icons: list[Icon], style: str) -> dict[str, Icon]:
    return {i.entry.hexcode: i for i in icons if i.style == style}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1f44b-1F3FB", "1F44B-1F3FB"),
        ("0023-FE0F-20E3", "23-20E3"),
        ("23-fe0f-20e3", "23-20E3"),
        ("2764-fe0f", "2764"),
        ("2764_FE0F", "2764"),
        (" 1F600 ", "1F600"),
    ],
)
def test_normalize_hexcode(raw: str, expected: str) -> None:
    assert normalize_hexcode(raw) == expected


def test_base_hexcode_drops_every_skin_tone() -> None:
    assert base_hexcode("1f44b-1f3ff") == "1F44B"
    assert base_hexcode("1F468-1F3FB-200D-1F91D-200D-1F468-1F3FF") == "1F468-200D-1F91D-200D-1F468"


def test_join_counts_per_style(joined: tuple) -> None:
    _, stats, _ = joined
    assert stats == {
        "twemoji": {"icons": 12, "joined": 10, "joined_by_name": 0, "dropped": 2},
        "noto": {"icons": 8, "joined": 8, "joined_by_name": 1, "dropped": 1},
        "openmoji": {"icons": 10, "joined": 9, "joined_by_name": 0, "dropped": 1},
        "fluent-emoji-flat": {"icons": 8, "joined": 9, "joined_by_name": 1, "dropped": 0},
        "fluent-emoji": {"icons": 8, "joined": 8, "joined_by_name": 8, "dropped": 1},
        "fluent-emoji-high-contrast": {"icons": 3, "joined": 3, "joined_by_name": 0, "dropped": 0},
        "emojione": {"icons": 8, "joined": 6, "joined_by_name": 6, "dropped": 2},
    }


def test_case_and_fe0f_normalised(joined: tuple) -> None:
    icons, _, _ = joined
    # noto writes "2764-FE0F", openmoji "23-fe0f-20e3", twemoji "0023-20e3": all meet emojibase's entries
    assert by(icons, "noto")["2764"].name == "red-heart"
    assert by(icons, "openmoji")["23-20E3"].name == "keycap-pound"
    assert by(icons, "twemoji")["23-20E3"].entry.raw_hexcode == "0023-FE0F-20E3"
    assert by(icons, "twemoji")["1F44B-1F3FF"].entry.tone == (5,)


def test_sets_without_chars_join_by_name(joined: tuple) -> None:
    icons, _, _ = joined
    fluent = by(icons, "fluent-emoji")  # empty chars.json: names through fluent-emoji-flat's chars.json
    assert fluent["1F44B-1F3FB"].name == "waving-hand-light"
    assert fluent["1F984"].name == "unicorn"  # through the slug of emojibase's English label
    emojione = by(icons, "emojione")  # no chars.json at all
    assert set(emojione) == {"1F600", "1F605", "1F44B", "1F431", "2764", "23-20E3"}


def test_components_hidden_and_unknown_icons_are_dropped(joined: tuple) -> None:
    icons, _, entries = joined
    assert "1F3FB" not in entries and "1F1E6" not in entries  # a component, and an entry without a group
    names = {(i.style, i.name) for i in icons}
    assert ("twemoji", "light-skin-tone") not in names and ("twemoji", "twitter-bird") not in names
    assert ("noto", "pizza") not in names  # hidden in the icon set


def test_alias_flips_are_applied(joined: tuple) -> None:
    icons, _, _ = joined
    for style in ("noto", "fluent-emoji-flat", "fluent-emoji"):
        left, right = by(icons, style)["1F448"], by(icons, style)["1F449"]
        assert right.name == "backhand-index-pointing-right" and "scale(-1 1)" in right.svg
        a_left, a_right = render(left.svg, 16)[..., 3], render(right.svg, 16)[..., 3]
        assert a_left[:, :8].sum() > 10 * a_left[:, 8:].sum()
        assert a_right[:, 8:].sum() > 10 * a_right[:, :8].sum()
        np.testing.assert_array_equal(a_left[:, ::-1], a_right)


def test_non_square_icons_are_centred(joined: tuple) -> None:
    icons, _, _ = joined
    assert 'viewBox="-14.0 0.0 128 128"' in by(icons, "noto")["1F984"].svg


def test_labels_in_every_locale_asked_and_always_english(cache_dir: Path, no_npm: None) -> None:
    _, emojibase_dir = fetch_all(cache_dir / "npm")
    entries = load_emojibase(emojibase_dir, ("de",))
    assert set(entries["1F600"].labels) == {"en", "de"}
    assert entries["1F44B-1F3FB"].labels["de"] == "winkende Hand: helle Hautfarbe"
    assert entries["1F44B-1F3FB"].tags["de"] == ["Hand", "winken"]  # skin tones share the base's tags
    assert "de" not in entries["1F355"].labels  # pizza has no German entry in the fixture


def test_holdout_file_is_normalised() -> None:
    assert load_holdout(HOLDOUT) == {
        ("1F44B", "twemoji"),
        ("1F605", "noto"),
        ("2764", "openmoji"),
        ("1F44D", "fluent-emoji-flat"),
        ("1F9FF", "emojione"),
    }


def test_gender_direction_and_person_versions_share_a_family() -> None:
    from unclip.data.emoji import family_hexcode

    teacher = {family_hexcode(c) for c in ("1F469-200D-1F3EB", "1F468-200D-1F3EB", "1F9D1-200D-1F3EB")}
    walking = {family_hexcode(c) for c in ("1F6B6", "1F6B6-200D-2642-FE0F", "1F6B6-200D-27A1-FE0F", "1F6B6-1F3FD")}
    assert len(teacher) == len(walking) == 1
    assert family_hexcode("1F469-200D-1F3EB") != family_hexcode("1F469-200D-1F373")  # teacher, cook
    assert family_hexcode("1F600") == "1F600"
    signs = [family_hexcode(c) for c in ("2640-FE0F", "2642-FE0F", "27A1-FE0F")]  # female, male, right arrow
    assert signs == ["2640", "2642", "27A1"]  # each its own emoji, not one empty family
