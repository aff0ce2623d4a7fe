"""Reading a request's form strictly: Starlette's parsers read text that is not UTF-8 as Latin-1 (multipart) or
with U+FFFD in place of the bad bytes (urlencoded), and take a multipart body cut off before its closing
boundary as if it were whole, dropping the part it was cut in. Here such text is marked, not guessed at, and a
cut-off body is refused."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request

MAX_FIELDS = 1000  # Starlette's limits, fields and files each


@dataclass(frozen=True)
class NotText:
    """A form field whose bytes are not text in the form's charset (UTF-8 unless the request names one)."""

    charset: str


class _StrictMultiPart(MultiPartParser):
    complete = False

    def on_end(self) -> None:
        self.complete = True

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is not None:
            return super().on_part_end()
        try:
            value: str | NotText = bytes(part.data).decode(self._charset)
        except (UnicodeDecodeError, LookupError):
            value = NotText(self._charset)
        self.items.append((part.field_name, value))

    async def parse(self) -> FormData:
        form = await super().parse()
        if not self.complete:
            await form.close()
            raise MultiPartException("The multipart body ends before its closing boundary: it was cut off.")
        return form


class _StrictUrlEncoded(FormParser):
    def on_field_end(self) -> None:
        raw = bytes(self._field_value)
        super().on_field_end()
        try:
            unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            self._items[-1] = (self._items[-1][0], NotText("utf-8"))  # type: ignore[assignment]


async def read_form(request: Request, max_part_size: int) -> FormData:
    """The request's multipart or urlencoded form (close it when done); a malformed one is a 400."""
    ctype = request.headers.get("content-type", "").lower()
    try:
        if ctype.startswith("multipart/form-data"):
            parser: MultiPartParser | FormParser = _StrictMultiPart(
                request.headers, request.stream(), max_files=MAX_FIELDS, max_fields=MAX_FIELDS,
                max_part_size=max_part_size,
            )  # fmt: skip
        else:
            parser = _StrictUrlEncoded(
                request.headers, request.stream(), max_fields=MAX_FIELDS, max_part_size=max_part_size
            )
        return await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(400, detail=exc.message) from exc
