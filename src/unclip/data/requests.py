"""Requests put together from parts, as people write them: thousands of wordings around the subject and the
style in each language that has parts here, so that the text tower learns to read the label and the style name
through any filler (fixed templates are too few to teach that).

A request is `open + lead + subject + noun + close` with the style named after the subject (`style_last`) or
before it (`style_first`: next to it, or, if it ends in a colon, as a tag heading the request). None of them is an
evaluation phrasing: tests/evaluation/test_prompts.py matches every phrasing against a pattern of all a
language's parts can write."""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import product


@dataclass(frozen=True)
class RequestParts:
    open: tuple[str, ...]  # how the request starts: "", "please draw "
    lead: tuple[str, ...]  # just before the subject: "a ", "an icon of "
    noun: tuple[str, ...]  # just after it: " emoji"
    style_last: tuple[str, ...]  # the style after the subject: " like {s}"
    style_first: tuple[
        str, ...
    ]  # or before it: "{s}-style " (next to it), "{s}: " (a tag heading the request)
    close: tuple[str, ...]  # "", " please", "!"
    first_share: float = 0.25  # how often the style comes first


def _joined(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys("".join(p) for p in product(*groups)))


REQUEST_PARTS: dict[str, RequestParts] = {
    "en": RequestParts(
        open=_joined(
            ("", "please ", "pls ", "hey, ", "ok, ", "quick one: ", "could you ", "can u ", "now ", "help me "),
            ("", "draw ", "make ", "create ", "generate ", "render ", "paint ", "sketch ", "give me ", "show ",
             "i need ", "we want "),
        ),
        lead=("", "a ", "one ", "a cute ", "a simple ", "a tiny ", "a big ", "some "),
        noun=("", " emoji", " icon", " sticker", " symbol", " pictogram", " clipart", " graphic", " glyph",
              " emoticon", " drawing", " image"),
        style_last=(", {s} style", " {s}-style", " like {s}", " like {s} does it", " the {s} way", " from {s}",
                    " by {s}", " using {s}", " with {s}'s look", " matching {s}", " inspired by {s}", " à la {s}",
                    " styled after {s}", " in {s} flavour", " as seen in {s}", " (style: {s})", " - {s}",
                    " / {s}", " for {s}", ", {s} set"),
        style_first=("{s}-style ", "{s} ", "{s}: ", "{s} set: ", "in {s}: "),
        close=("", " please", " pls", "!", "!!", " thanks", " :)", ", ty", "?", " asap", ", clean lines",
               ", white background", ", no text"),
    ),
    "es": RequestParts(
        open=("", "por favor, ", "haz ", "hazme ", "dibújame ", "crea ", "genera ", "quiero ", "necesito ",
              "pinta ", "ponme ", "me haces "),
        lead=("", "un ", "una imagen de ", "un emoji de ", "un icono de ", "una pegatina de ", "un dibujo de ",
              "el símbolo de "),
        noun=("", " emoji", " en emoji", " en icono"),
        style_last=(", estilo {s}", " tipo {s}", " de {s}", " como lo hace {s}", " a lo {s}", " según {s}",
                    " (estilo: {s})", " - {s}", " / {s}", " con el look de {s}", " inspirado en {s}",
                    " igual que {s}"),
        style_first=("{s}: ", "estilo {s}: "),
        close=("", " por favor", "!", " gracias", ", fondo blanco", " ya", " :)"),
    ),
    "fr": RequestParts(
        open=("", "s'il te plaît, ", "fais ", "fais-moi ", "crée ", "génère ", "dessine-moi ", "je voudrais ",
              "il me faut ", "peux-tu faire ", "montre-moi "),
        lead=("", "un ", "une ", "une image de ", "un emoji de ", "une icône de ", "un sticker de ",
              "un dessin de "),
        noun=("", " en emoji", " en icône", " en sticker"),
        style_last=(", style {s}", " à la {s}", " de {s}", " comme {s} le fait", " d'après {s}", " (style : {s})",
                    " - {s}", " / {s}", " avec le look {s}", " inspiré de {s}", " genre {s}", " pareil que {s}"),
        style_first=("{s} : ", "style {s} : "),
        close=("", " stp", " svp", " !", " merci", ", fond blanc", " :)"),
    ),
    "de": RequestParts(
        open=("", "bitte ", "mach ", "mach mir ", "erstelle ", "generiere ", "male ", "ich brauche ",
              "ich hätte gern ", "kannst du ", "zeig mir "),
        lead=("", "ein ", "eine ", "ein Bild von ", "ein Icon von ", "einen Sticker von ", "eine Zeichnung von "),
        noun=("", " Emoji", " Icon", " Sticker", " Symbol"),
        style_last=(", {s}-Look", " wie bei {s}", " von {s}", " nach Art von {s}", " à la {s}", " (Stil: {s})",
                    " - {s}", " / {s}", " im Look von {s}", " inspiriert von {s}", " so wie {s} es macht",
                    " in {s}-Optik"),
        style_first=("{s}: ", "{s}-Design: ", "{s}-artiges ", "{s}-mäßiges "),
        close=("", " bitte", "!", " danke", ", weißer Hintergrund", " :)"),
    ),
    "it": RequestParts(
        open=("", "per favore, ", "fai ", "fammi ", "crea ", "genera ", "vorrei ", "mi serve ", "puoi fare ",
              "mostrami "),
        lead=("", "un ", "una ", "un'immagine di ", "un'emoji di ", "un'icona di ", "uno sticker di ",
              "un disegno di "),
        noun=("", " emoji", " come emoji", " come icona"),
        style_last=(", stile {s}", " tipo {s}", " di {s}", " come fa {s}", " alla {s}", " (stile: {s})", " - {s}",
                    " / {s}", " con il look di {s}", " ispirato a {s}", " uguale a {s}"),
        style_first=("{s}: ", "stile {s}: "),
        close=("", " per favore", "!", " grazie", ", sfondo bianco", " :)"),
    ),
    "pt": RequestParts(
        open=("", "por favor, ", "faz ", "faça ", "faz pra mim ", "crie ", "gera ", "desenha ", "quero ",
              "preciso de ", "me mostra "),
        lead=("", "um ", "uma ", "uma imagem de ", "um emoji de ", "um ícone de ", "uma figurinha de ",
              "um desenho de "),
        noun=("", " emoji", " em emoji", " em ícone"),
        style_last=(", estilo {s}", " tipo {s}", " do {s}", " como o {s} faz", " à moda do {s}", " (estilo: {s})",
                    " - {s}", " / {s}", " com a cara do {s}", " inspirado no {s}", " igual ao {s}",
                    " jeito {s}"),
        style_first=("{s}: ", "estilo {s}: "),
        close=("", " por favor", " pfv", "!", " obrigado", ", fundo branco", " :)"),
    ),
    "nl": RequestParts(
        open=("", "graag ", "maak ", "maak voor mij ", "genereer ", "teken voor mij ", "ik wil ",
              "ik zoek ", "kun je maken: ", "laat zien: "),
        lead=("", "een ", "een plaatje van ", "een emoji van ", "een icoon van ", "een sticker van ",
              "een tekening van "),
        noun=("", " emoji", " icoon", " sticker"),
        style_last=(", {s}-look", " zoals {s} het doet", " van {s}", " à la {s}", " (stijl: {s})", " - {s}",
                    " / {s}", " met de look van {s}", " geïnspireerd op {s}", " net als {s}", " in {s}-ontwerp"),
        style_first=("{s}: ", "{s}-stijl: ", "{s}-achtige "),
        close=("", " graag", " aub", "!", " bedankt", ", witte achtergrond", " :)"),
    ),
    "ru": RequestParts(
        open=("", "пожалуйста, ", "сделай ", "нарисуй мне ", "создай ", "сгенерируй ", "хочу ", "нужен ",
              "покажи ", "можешь сделать "),
        lead=("", "картинку: ", "эмодзи: ", "иконку: ", "стикер: ", "рисунок: ", "смайлик "),
        noun=("", " эмодзи", " иконкой", " стикером"),
        style_last=(", стиль {s}", " как у {s}", " от {s}", " в манере {s}", " а-ля {s}", " (стиль: {s})",
                    " - {s}", " / {s}", " в духе {s}", " по мотивам {s}", " как это делает {s}"),
        style_first=("{s}: ", "стиль {s}: "),
        close=("", " пожалуйста", " плиз", "!", " спасибо", ", белый фон", " :)"),
    ),
    "ja": RequestParts(
        open=("", "お願い、", "作って：", "描いて：", "生成：", "ください：", "欲しい：", "ねえ、"),
        lead=("", "かわいい", "シンプルな", "小さな"),
        noun=("", "の絵文字", "のアイコン", "のスタンプ", "のイラスト", "の画像", "マーク"),
        style_last=("、{s}っぽく", "、{s}みたいに", "、{s}のデザインで", "（{s}）", "、{s}の感じ", " / {s}",
                    "、{s}テイスト", "、{s}タッチで", "、スタイル：{s}"),
        style_first=("{s}：", "{s}っぽい", "{s}みたいな", "{s}テイストの", "{s}タッチの", "{s}デザインの"),
        close=("", "をお願い", "ください", "！", "。", "してね", "、白背景"),
        first_share=0.5,
    ),
    "zh": RequestParts(
        open=("", "帮我画", "请画", "画", "做一个", "生成", "给我", "我想要", "来一个", "麻烦画"),
        lead=("", "一个", "个", "可爱的", "简单的", "小小的"),
        noun=("", "表情", "的图标", "贴纸", "的插画", "符号", "的图片", "emoji"),
        style_last=("，{s}那种", "，像{s}那样", "，{s}样式", "（{s}）", "，参考{s}", " / {s}", "，{s}的感觉",
                    "，{s}的画法", "，风格：{s}", "，仿{s}"),
        style_first=("{s}：", "{s}样式的", "像{s}那样的", "{s}那种", "仿{s}的", "{s}画法的"),
        close=("", "，谢谢", "！", "。", "吧", "，白色背景", "，要快"),
        first_share=0.5,
    ),
}  # fmt: skip


def is_tag(style_first: str) -> bool:
    return style_first.rstrip().endswith((":", "："))


def request(locale: str, subject: str, style_name: str, rng: random.Random) -> str:
    """One request in `locale` (a language of REQUEST_PARTS) for `subject` in the style `style_name`."""
    p = REQUEST_PARTS[locale]
    lead = rng.choice(p.lead)
    if locale == "en" and lead == "a " and subject[:1].lower() in "aeiou":
        lead = "an "
    noun, tag = rng.choice(p.noun), ""
    if rng.random() < p.first_share:
        first = rng.choice(p.style_first).format(s=style_name)
        if is_tag(first):
            tag, body = first, lead + subject + noun
        else:
            body = lead + first + subject + noun
    else:
        body = lead + subject + noun + rng.choice(p.style_last).format(s=style_name)
    text = tag + rng.choice(p.open) + body + rng.choice(p.close)
    if rng.random() < 0.3:
        text = text[:1].upper() + text[1:]
    return text
