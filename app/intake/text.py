"""Decoding of report bodies and clean-up of the text they carry."""

import codecs
import json
import re

# Characters that PostgreSQL text columns reject or that break display.
_NUL = "\x00"
_SURROGATE = re.compile("[\ud800-\udfff]")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_body(raw, charset=None):
    """Return the request body as text, whatever its encoding.

    Order: the charset the client declared, a byte-order mark, UTF-8, UTF-16
    without a mark (every other byte zero), and finally Windows-1252 with the
    five bytes it leaves undefined replaced, so a Latin-1 script's report is
    stored readably.
    """
    if charset:
        try:
            return raw.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return raw.decode(encoding, errors="replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    utf16 = _guess_utf16_without_bom(raw)
    if utf16:
        return raw.decode(utf16, errors="replace")
    return raw.decode("cp1252", errors="replace")


def _guess_utf16_without_bom(raw):
    if len(raw) < 2 or len(raw) % 2:
        return None
    if raw[1::2].count(0) > len(raw) // 4:
        return "utf-16-le"
    if raw[0::2].count(0) > len(raw) // 4:
        return "utf-16-be"
    return None


def clean_text(value):
    """Return `value` with NUL characters and lone surrogates replaced by U+FFFD.

    JSON may carry both as escapes. PostgreSQL rejects NUL in text, and
    UTF-8 cannot encode a lone surrogate.
    """
    if _NUL in value:
        value = value.replace(_NUL, "\ufffd")
    # json.loads joins valid surrogate pairs, so any surrogate left is lone.
    return _SURROGATE.sub("\ufffd", value)


def tail(text, max_bytes):
    """Return (kept, cut_bytes): the end of `text` within `max_bytes` of UTF-8.

    The end is kept because a failing backup prints its error last. The cut
    lands on a character boundary.
    """
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text, 0
    kept = encoded[len(encoded) - max_bytes:]
    # Skip continuation bytes so the kept part starts on a whole character.
    start = 0
    while start < len(kept) and (kept[start] & 0xC0) == 0x80:
        start += 1
    kept = kept[start:]
    return kept.decode("utf-8"), len(encoded) - len(kept)


def truncation_marker(cut_bytes):
    return f"[... {cut_bytes} bytes cut from the start of the log ...]\n"


def parse_json_text(text):
    """Parse JSON text; raise ValueError with the position of the problem."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply") from None
