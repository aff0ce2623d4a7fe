from __future__ import annotations

import pytest

from unclip.safety.normalize import normalize, normalize_term, strip_marks


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("K1ll the h0stages!", "kill the hostages"),  # leetspeak, case, edge punctuation
        ("p o r n", "porn"),  # spaced letters
        ("s.e.x", "sex"),  # punctuation inside words
        ("n-a-z-i", "nazi"),
        ("n\u200bu\u200bd\u200be", "nude"),  # zero-width characters
        ("N\u0430ked", "naked"),  # Cyrillic а inside a Latin word
        ("\uff2e\uff21\uff2b\uff25\uff24", "naked"),  # fullwidth
        ("\U0001d429\U0001d428\U0001d42b\U0001d427", "porn"),  # mathematical bold
        ("séx tàpe", "sex tape"),  # diacritics
        ("$ex", "sex"),
        ("b00bs", "boobs"),
        ("kiiiiill", "kill"),
        ("p_o_r_n_o_g_r_a_p_h_y", "pornography"),
    ],
)
def test_deobfuscation(text: str, expected: str) -> None:
    assert normalize(text).skeleton == expected


@pytest.mark.parametrize(
    "text", ["4 cats in 3d, 1990s style", "a 4k wallpaper", "covid-19 mask", "the 2nd of may at 5pm"]
)
def test_numbers_are_not_leetspeak(text: str) -> None:
    n = normalize(text)
    for word in ("4", "3d", "1990s", "4k", "2nd", "5pm"):
        if word in text:
            assert word in n.skeleton


def test_emoji_are_removed_and_scripts_kept() -> None:
    n = normalize("a bomb! \U0001f4a3 emoji \U0001f1fa\U0001f1e6")
    assert n.clean == "a bomb emoji"
    assert normalize("убийство человека").plain == "убииство человека"  # й loses its breve like é
    assert normalize("आत्महत्या").plain == "आत्महत्या"  # Indic vowel signs are kept
    assert normalize("自杀").plain == "自杀"


def test_pure_cyrillic_words_stay_readable_for_the_classifier() -> None:
    n = normalize("собака в снегу")
    assert n.clean == "собака в снегу"  # only mixed-script words are mapped in `clean`
    assert n.skeleton != n.clean  # the rules' skeleton maps every look-alike


def test_terms_and_marks() -> None:
    assert normalize_term("Séx*") == "sex*"
    assert strip_marks("crème brûlée") == "creme brulee"
