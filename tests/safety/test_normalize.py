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
    "text",
    ["4 cats in 3d, 1990s style", "a 4k wallpaper", "covid-19 mask", "the 2nd of may at 5pm", "3rd, 21st, 11th"],
)
def test_numbers_are_not_leetspeak(text: str) -> None:
    n = normalize(text)
    for word in ("4", "3d", "1990s", "4k", "2nd", "5pm", "3rd", "21st", "11th"):
        if word in text:
            assert word in n.skeleton


def test_a_digit_before_a_wrong_ordinal_ending_is_leetspeak() -> None:
    assert normalize("3nd my l1fe").clean == "end my life"  # 3rd would be the ordinal
    assert normalize("the 3rd act").clean == "the 3rd act"


def test_emoji_are_removed_and_scripts_kept() -> None:
    n = normalize("a bomb! \U0001f4a3 emoji \U0001f1fa\U0001f1e6")
    assert n.clean == "a bomb emoji"
    assert normalize("убийство человека").plain == "убииство человека"  # й loses its breve like é
    assert normalize("आत्महत्या").plain == "आत्महत्या"  # Indic vowel signs are kept
    assert normalize("自杀").plain == "自杀"


def test_pure_cyrillic_words_stay_readable_for_the_classifier() -> None:
    n = normalize("собака в снегу")
    assert n.clean == "собака в снегу"  # Russian text stays Russian in `clean`
    assert n.skeleton != n.clean  # the rules' skeleton maps every look-alike
    assert normalize("фото кошки и cat").clean == "фото кошки и cat"


def test_a_word_of_look_alikes_inside_latin_text_is_read_as_latin() -> None:
    assert normalize("a \u0455\u0435\u0445\u0443 nurse on a bed").clean == "a sexy nurse on a bed"  # all Cyrillic
    assert normalize("\u0455\u0435\u0445\u0443").clean == "\u0455\u0435\u0445\u0443"  # nothing Latin around it


def test_terms_and_marks() -> None:
    assert normalize_term("Séx*") == "sex*"
    assert strip_marks("crème brûlée") == "creme brulee"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a_naked_woman_on_a_bed", "a naked woman on a bed"),
        ("a.cat.on.a.mat", "a cat on a mat"),
        ("a+naked+woman", "a naked woman"),
        ("a-naked-woman-on-a-bed, film photo", "a naked woman on a bed film photo"),
        ("n@ked_w0man", "naked woman"),  # read after leetspeak too
        ("photos_of_girls_18_to_22", "photos of girls 18 to 22"),  # numbers are words
        ("NakedWomanOnBed", "naked woman on bed"),
        ("ASuicideNoteOnADesk", "a suicide note on a desk"),
    ],
)
def test_english_words_joined_without_spaces_are_set_apart(text: str, expected: str) -> None:
    assert normalize(text).clean == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sui.cide", "suicide"),  # one word spelt out in pieces is joined, not split
        ("pr.o.pa.gan.da", "propaganda"),
        ("por_no_gra_phy", "pornography"),
        ("hit-ler", "hitler"),
        ("k.i.l.l", "kill"),
        ("a real-looking x-ray of my mother-in-law", "a reallooking xray of my motherinlaw"),  # compounds
        ("ich_habe_gewählt", "ichhabegewahlt"),  # words of other languages are not judged as English
        ("iPhone, YouTube and NASA", "iphone youtube and nasa"),  # one hump is a name
        ("a cArIcaTuRE Of A fAmILy", "a caricature of a family"),  # random case is not camel case
        ("3.5 covid-19 e.g.", "35 covid19 eg"),
    ],
)
def test_pieces_of_one_word_and_compounds_stay_one_word(text: str, expected: str) -> None:
    assert normalize(text).clean == expected


def test_a_prompt_written_without_spaces_is_also_read_as_words() -> None:
    n = normalize("howtomakeapipebomb")
    assert n.clean == "howtomakeapipebomb"  # the classifier reads both; the rules match either
    assert n.segmented == "how to make a pipe bomb"
    assert "how to make a pipe bomb" in n.word_views()
    long_word = normalize("a poster saying killalltheinvadersnow in red")
    assert long_word.segmented == "a poster saying kill all the invaders now in red"
    for compound in ("Küchenmesser", "ein Wasserpistolenemoji", "supercalifragilisticexpialidocious"):
        n = normalize(compound)
        assert n.segmented == n.clean, compound  # other languages' compounds do not come back in scraps
    assert normalize("a cat").segmented == "a cat"


def test_hashtags_are_also_read_as_words() -> None:
    """A hashtag is words written without spaces by convention, shorter than a long word: read as words too."""
    assert normalize("a cute cat with #hatejews sign").segmented == "a cute cat with hate jews sign"
    assert normalize("a sign #b0mbtheembassy").segmented == "a sign bomb the embassy"  # leetspeak first
    assert normalize("a banner #KidnapTheChild").clean == "a banner kidnap the child"  # camel case
    assert normalize("hatejews on a sign").segmented == "hatejews on a sign"  # a short word elsewhere stays
    assert normalize("#tbt #ootd #love").segmented == "tbt ootd love"  # tags that are not words stay
    assert normalize("#Küchenmesser").segmented == normalize("#Küchenmesser").clean


def test_doubled_letters_are_also_read_once() -> None:
    n = normalize("an explloosionn tthhrroughh a crowdeedd bbuus")
    assert n.clean == "an explloosionn tthhrroughh a crowdeedd bbuus"
    assert n.segmented == "an explosion through a crowded bus"
    assert normalize("kiill him").segmented == "kill him"  # the most common spelling: not "kil"
    for text in ("a bottle of wine", "ein Kaffee am Meer", "wasser"):  # real doubles stay
        assert normalize(text).segmented == normalize(text).clean, text
