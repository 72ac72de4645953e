"""Rewrite text the way a person would read it aloud, before it goes to the voice.

Piper's English voices phonemize with espeak, which reads "$3.50", "2026-11-26"
or "Dr." poorly or not at all, so numbers, dates, times, money, units and common
abbreviations are spelled out here as words.  Sentence punctuation is kept
because the voice uses it for prosody.

The only public function is `normalize`.  It never raises: any `str` in gives a
`str` out, with no ASCII digits left in it.

Rules worth knowing (also listed in docs/render-and-scripts.md):
- A bare 4-digit number from 1100 to 2099 is read as a year ("1999" ->
  "nineteen ninety-nine") unless a quantity word such as "about", "over" or
  "than" comes before it.  Write "2,024" to force the plain number.
- Slash dates are read M/D/Y when the first number is 12 or less, else D/M/Y;
  dot dates (26.11.2026) are always D.M.Y.
- Letters of non-Latin scripts (Cyrillic, CJK, ...) are dropped, since an
  English voice cannot say them; accented Latin letters are kept for espeak.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable

# --------------------------------------------------------------------------
# Numbers to words
# --------------------------------------------------------------------------

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = (
    (10**15, "quadrillion"),
    (10**12, "trillion"),
    (10**9, "billion"),
    (10**6, "million"),
    (10**3, "thousand"),
)
# Past the quadrillions nobody says the number in words; reading the digits is clearer.
_WORDS_LIMIT = 10**18

_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def _spell_digits(digits: str) -> str:
    return " ".join(_ONES[int(c)] for c in digits if c.isdigit())


def _below_hundred(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = []
    if hundreds:
        parts.append(f"{_ONES[hundreds]} hundred")
    if rest or not hundreds:
        parts.append(_below_hundred(rest))
    return " ".join(parts)


def _cardinal(n: int) -> str:
    if n < 0:
        return "minus " + _cardinal(-n)
    if n >= _WORDS_LIMIT:
        return _spell_digits(str(n))
    if n < 1000:
        return _below_thousand(n)
    parts = []
    for value, name in _SCALES:
        if n >= value:
            count, n = divmod(n, value)
            parts.append(f"{_below_thousand(count)} {name}")
    if n:
        parts.append(_below_thousand(n))
    return " ".join(parts)


def _ordinal(n: int) -> str:
    words = _cardinal(n)
    head, sep, last = words.rpartition(" ")
    # "twenty-one" -> "twenty-first": only the last hyphenated piece changes.
    stem, hyphen, piece = last.rpartition("-")
    if piece in _ORDINAL_IRREGULAR:
        piece = _ORDINAL_IRREGULAR[piece]
    elif piece.endswith("y"):
        piece = piece[:-1] + "ieth"
    else:
        piece += "th"
    return head + sep + stem + hyphen + piece


def _year(n: int) -> str:
    """Read a year the way people say it: 1999, 1905, 1900, 2000, 2005, 2024."""
    if not 1000 <= n <= 9999:
        return _cardinal(n)
    high, low = divmod(n, 100)
    if n % 1000 < 10 and high % 10 == 0:
        return _cardinal(n)  # 2000 -> "two thousand", 2005 -> "two thousand five"
    if low == 0:
        return f"{_cardinal(high)} hundred"
    if low < 10:
        return f"{_cardinal(high)} oh {_ONES[low]}"
    return f"{_cardinal(high)} {_below_hundred(low)}"


def _integer_words(digits: str) -> str:
    """Cardinal for a digit string; leading zeros ("007", zip codes) are read digit by digit."""
    if len(digits) > 1 and digits.startswith("0"):
        return _spell_digits(digits)
    return _cardinal(int(digits))


def _read_number(token: str) -> str:
    """'-1,234.05' -> 'minus one thousand two hundred thirty-four point zero five'."""
    negative = token.startswith("-")
    whole, _, fraction = token.lstrip("-").partition(".")
    whole = whole.replace(",", "")
    words = _integer_words(whole) if whole else ""
    if fraction:
        words = f"{words} point {_spell_digits(fraction)}".strip()
    return f"minus {words}" if negative else words


def _plural(words: str) -> str:
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


# Digits only ever mean ASCII here: _clean_characters maps every other decimal digit to ASCII first.
_INT = r"(?:\d{1,3}(?:,\d{3})+|\d+)"
_NUM = rf"{_INT}(?:\.\d+)?"
# A leading "-" is a minus sign only where it cannot be a hyphen ("COVID-19").
_SIGNED = rf"(?:(?<![\w.])-)?(?<![\w.,]){_NUM}"


def _sub(pattern: re.Pattern[str], text: str, replace: Callable[[re.Match[str]], str | None]) -> str:
    """re.sub whose callback may return None to keep the match, and that keeps words from gluing together."""

    def wrapped(m: re.Match[str]) -> str:
        out = replace(m)
        if out is None:
            return m.group(0)
        source = m.string
        if out[:1].isalnum() and m.start() > 0 and source[m.start() - 1].isalnum():
            out = " " + out
        if out[-1:].isalnum() and m.end() < len(source) and source[m.end()].isalnum():
            out += " "
        return out

    return pattern.sub(wrapped, text)


# Context is read through a bounded window or a match at a position, never by slicing to the
# end of the text: a slice per match turns long inputs quadratic.
_CONTEXT = 80
_AT_END = re.compile(r"\s*$")
_NEXT_SENTENCE = re.compile(r"\s*$|\s+[\"'(]?[A-Z]")
_NEXT_CAPITAL = re.compile(r"\s+[A-Z]")


def _before(text: str, pos: int) -> str:
    return text[max(0, pos - _CONTEXT) : pos]


def _ends_sentence(text: str, pos: int) -> bool:
    """True when a period consumed at `pos` was probably also the sentence's full stop."""
    return _NEXT_SENTENCE.match(text, pos) is not None


def _sentence_start(text: str, pos: int) -> bool:
    before = _before(text, pos).rstrip()
    return not before or before[-1] in ".!?"


# --------------------------------------------------------------------------
# Unicode clean-up
# --------------------------------------------------------------------------

_CHAR_MAP = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u02bc": "'",
    "\u2039": "'", "\u203a": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u300c": '"', "\u300d": '"', "\u300e": '"', "\u300f": '"',
    "\u2014": ", ", "\u2015": ", ",  # em dash, horizontal bar: a pause
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2212": "-", "\u2043": "-",
    "\u2026": "...",
    "\u3002": ".", "\u3001": ",",
    "\u2022": ", ", "\u25e6": ", ", "\u25aa": ", ", "\u2023": ", ", "\u00b7": ", ", "\u30fb": ", ",
    "\u00bd": " one half ", "\u2153": " one third ", "\u2154": " two thirds ",
    "\u00bc": " one quarter ", "\u00be": " three quarters ",
    "\u00b2": " squared ", "\u00b3": " cubed ",
    "\u00f7": " divided by ", "\u00b1": " plus or minus ", "\u2248": " approximately ",
    "\u2264": " less than or equal to ", "\u2265": " greater than or equal to ", "\u2260": " not equal to ",
    "\u221e": " infinity ", "\u221a": " square root of ", "\u2192": " to ",
    "\u2030": " per thousand ", "\u00a7": " section ", "\u2116": " number ",
    "\u2103": "\u00b0C", "\u2109": "\u00b0F",
    "\u2122": "", "\u00ae": "", "\u00a9": "",
    "\u00b5": "mu", "\u03bc": "mu", "\u03b1": "alpha", "\u03b2": "beta", "\u03b3": "gamma",
    "\u03b4": "delta", "\u0394": "delta", "\u03b5": "epsilon", "\u03b8": "theta", "\u03bb": "lambda",
    "\u03c0": "pi", "\u03c3": "sigma", "\u03a3": "sigma", "\u03c6": "phi", "\u03c9": "omega", "\u03a9": "omega",
}
# "2½" is "two and a half"; a lone "½" falls through to _CHAR_MAP.
_MIXED_FRACTION = re.compile(r"(?<=\d)\s?([½¼¾⅓⅔])")
_MIXED_FRACTION_WORDS = {
    "½": " and a half", "¼": " and a quarter", "¾": " and three quarters",
    "⅓": " and a third", "⅔": " and two thirds",
}
# Kept as-is for the money, temperature and multiplication rules; anything left over is named at the end.
_KEEP = set("€£¥₹¢°×")


def _clean_char(c: str) -> str:
    if c in _CHAR_MAP:
        return _CHAR_MAP[c]
    if c in _KEEP:
        return c
    category = unicodedata.category(c)
    if category == "Nd":
        return str(unicodedata.digit(c, 0))
    if category in ("Zs", "Zl", "Zp"):
        return " "
    if category[0] in "MC":
        # Marks, format characters (zero-width joiners, soft hyphens), surrogates, unassigned:
        # they sit inside words, so they vanish without leaving a gap.
        return ""
    compat = unicodedata.normalize("NFKC", c)
    if compat != c and compat.isascii() and compat.isprintable():
        return compat  # fullwidth forms, ligatures, circled digits
    if category[0] == "L" and "LATIN" in unicodedata.name(c, ""):
        return c  # espeak reads accented Latin letters itself
    # Emoji, other symbols, other scripts: unspeakable for an English voice.
    return " "


def _clean_characters(text: str) -> str:
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    # A blank line with no closing punctuation (a heading, a list item) still deserves a full stop.
    text = re.sub(r"([^\s.!?;:,])[ \t]*\n[ \t]*\n", r"\1.\n\n", text)
    text = _MIXED_FRACTION.sub(lambda m: _MIXED_FRACTION_WORDS[m.group(1)], text)
    out = []
    for c in text:
        if " " <= c <= "~":
            out.append(c)
        elif c in "\n\t\v\f":
            out.append(" ")
        elif c < " " or c == "\x7f":
            continue  # other ASCII control characters
        elif c == "\u2013":
            out.append("\u2013")  # en dash: decided below, with its neighbours in view
        else:
            out.append(_clean_char(c))
    # Runs of whitespace are cut to one space now, so that no later pattern scans a long run.
    text = re.sub(r"\s+", " ", "".join(out))
    # An en dash between spaces is a pause; joining two things ("1990–1999") it is a hyphen.
    text = re.sub(r"\s+\u2013\s+|\s+\u2013|\u2013\s+", ", ", text)
    return text.replace("\u2013", "-")


# --------------------------------------------------------------------------
# Dates and times
# --------------------------------------------------------------------------

_MONTHS = (
    "January February March April May June July August September October November December"
).split()
_MONTH_NUMBER = {name: i + 1 for i, name in enumerate(_MONTHS)}
_MONTH_NUMBER.update(
    {"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "Jun": 6, "Jul": 7, "Aug": 8,
     "Sep": 9, "Sept": 9, "Oct": 10, "Nov": 11, "Dec": 12}
)
_MONTH = "|".join(sorted(_MONTH_NUMBER, key=len, reverse=True))
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_ISO_DATE = re.compile(r"(?<![\d-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\d-])")
_SLASH_DATE = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})(?![\d/])")
_DOT_DATE = re.compile(r"(?<![\d.])(\d{1,2})\.(\d{1,2})\.(\d{4})(?!\d|\.\d)")
_MONTH_DAY = re.compile(rf"\b({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}})\b)?")
_DAY_MONTH = re.compile(rf"(?<![\w.,])(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})\b(?:\.?,?\s+(\d{{4}})\b)?")


def _valid_date(month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month - 1]


def _year_of_date(year: str) -> str:
    if len(year) == 2:
        # "5/3/24": say the short year as written rather than guess the century.
        return f"oh {_ONES[int(year)]}" if year.startswith("0") else _cardinal(int(year))
    return _year(int(year))


def _month_first(month: int, day: int, year: str | None) -> str:
    words = f"{_MONTHS[month - 1]} {_ordinal(day)}"
    return f"{words}, {_year_of_date(year)}" if year else words


def _expand_dates(text: str) -> str:
    def iso(m: re.Match[str]) -> str | None:
        year, month, day = m.group(1), int(m.group(2)), int(m.group(3))
        return _month_first(month, day, year) if _valid_date(month, day) else None

    def slash(m: re.Match[str]) -> str | None:
        first, second, year = int(m.group(1)), int(m.group(2)), m.group(3)
        month, day = (first, second) if first <= 12 else (second, first)
        return _month_first(month, day, year) if _valid_date(month, day) else None

    def dotted(m: re.Match[str]) -> str | None:
        day, month, year = int(m.group(1)), int(m.group(2)), m.group(3)
        return _month_first(month, day, year) if _valid_date(month, day) else None

    def month_day(m: re.Match[str]) -> str | None:
        month, day = _MONTH_NUMBER[m.group(1)], int(m.group(2))
        return _month_first(month, day, m.group(3)) if _valid_date(month, day) else None

    def day_month(m: re.Match[str]) -> str | None:
        day, month, year = int(m.group(1)), _MONTH_NUMBER[m.group(2)], m.group(3)
        if not _valid_date(month, day):
            return None
        # "the 5th of November" already has its article.
        has_article = re.search(r"\bthe\s*$", _before(m.string, m.start()), re.I) is not None
        words = f"{'' if has_article else 'the '}{_ordinal(day)} of {_MONTHS[month - 1]}"
        return f"{words}, {_year_of_date(year)}" if year else words

    text = _sub(_ISO_DATE, text, iso)
    text = _sub(_SLASH_DATE, text, slash)
    text = _sub(_DOT_DATE, text, dotted)
    text = _sub(_MONTH_DAY, text, month_day)
    return _sub(_DAY_MONTH, text, day_month)


_MERIDIEM = r"\s?([AaPp])\.?\s?[Mm]\b(\.?)"
_CLOCK = re.compile(rf"(?<![\d:.])(\d{{1,2}}):(\d{{2}})(?::(\d{{2}}))?(?![\d:])(?:{_MERIDIEM})?")
_HOUR_MERIDIEM = re.compile(rf"(?<![\w:.,])(\d{{1,2}}){_MERIDIEM}")


def _minutes(minute: int) -> str:
    return f"oh {_ONES[minute]}" if minute < 10 else _below_hundred(minute)


def _clock_words(hour: int, minute: int, meridiem: str | None) -> str:
    if meridiem and hour <= 12:
        spoken = _cardinal(hour or 12)
        if minute:
            spoken += " " + _minutes(minute)
        return f"{spoken} {meridiem} m"
    if hour == 0:
        return "midnight" if minute == 0 else f"twelve {_minutes(minute)} a m"
    if minute == 0:
        # 24-hour afternoon times are said "fifteen hundred"; 1-12 as "o'clock".
        return f"{_cardinal(hour)} o'clock" if hour <= 12 else f"{_cardinal(hour)} hundred"
    return f"{_cardinal(hour)} {_minutes(minute)}"


def _expand_times(text: str) -> str:
    def clock(m: re.Match[str]) -> str | None:
        hour, minute = int(m.group(1)), int(m.group(2))
        second = int(m.group(3)) if m.group(3) else 0
        if hour > 23 or minute > 59 or second > 59:
            return None
        meridiem = m.group(4).lower() if m.group(4) else None
        words = _clock_words(hour, minute, meridiem)
        if second:
            words += f" and {_cardinal(second)} second" + ("s" if second != 1 else "")
        if m.group(5) and _ends_sentence(m.string, m.end()):
            words += "."
        return words

    def hour_only(m: re.Match[str]) -> str | None:
        hour = int(m.group(1))
        if not 1 <= hour <= 12:
            return None
        words = _clock_words(hour, 0, m.group(2).lower())
        if m.group(3) and _ends_sentence(m.string, m.end()):
            words += "."
        return words

    text = _sub(_CLOCK, text, clock)
    return _sub(_HOUR_MERIDIEM, text, hour_only)


# --------------------------------------------------------------------------
# Phone numbers, ranges, money, percentages, temperatures, units
# --------------------------------------------------------------------------

_PHONE = re.compile(
    r"(?<!\w)(?:\(\d{3}\)\s?|\d{3}[-.])\d{3}[-.]\d{4}(?![\w-]|\.\d)"
    r"|(?<![\w.-])\d{3}-\d{4}(?![\w-]|\.\d)"
)
_RANGE = re.compile(rf"(?<![\w.,-])({_NUM})-({_NUM})(?![\w-]|\.\d)")


def _expand_phone_numbers(text: str) -> str:
    # Phone numbers are read digit by digit, with a pause between the groups.
    return _sub(_PHONE, text, lambda m: ", ".join(_spell_digits(g) for g in re.findall(r"\d+", m.group(0))))


def _expand_ranges(text: str) -> str:
    text = re.sub(r"(?<=\d)-(?=[$€£¥₹]\d)", " to ", text)  # $5-$10
    return _sub(_RANGE, text, lambda m: f"{m.group(1)} to {m.group(2)}")


# symbol: (unit, units, subunit, subunits); no subunit means decimals are read as decimals.
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", None, None),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
_MONEY_SCALES = {
    "thousand": "thousand", "million": "million", "billion": "billion", "trillion": "trillion",
    "k": "thousand", "K": "thousand", "m": "million", "M": "million", "mn": "million",
    "b": "billion", "B": "billion", "bn": "billion", "T": "trillion", "tn": "trillion",
}
_MONEY_PREFIX = re.compile(
    rf"(?:(?<![\w.])(-))?([$€£¥₹])\s?({_NUM})"
    r"(?:\s?(thousand|million|billion|trillion|bn|mn|tn)\b|([kKmMbBT])\b)?"
)
_MONEY_SUFFIX = re.compile(rf"({_SIGNED})\s?([€£¥₹¢])")
# "5 USD" and "USD 5" are read like "$5".
_CURRENCY_CODES = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}
_CODE_AFTER = re.compile(rf"({_SIGNED})\s?(USD|EUR|GBP|JPY|INR)\b")
_CODE_BEFORE = re.compile(rf"\b(USD|EUR|GBP|JPY|INR)\s?({_SIGNED})")


def _money(amount: str, symbol: str, scale: str | None) -> str:
    unit, units, sub, subs = _CURRENCIES[symbol]
    if scale:
        return f"{_read_number(amount)} {_MONEY_SCALES[scale]} {units}"
    negative = amount.startswith("-")
    whole, _, fraction = amount.lstrip("-").replace(",", "").partition(".")
    if fraction and (len(fraction) > 2 or sub is None):
        return f"{_read_number(amount)} {units}"
    main = int(whole)
    # "$3.5" is three fifty, not three and five cents.
    cents = int(fraction.ljust(2, "0")) if fraction else 0
    parts = []
    if main or not cents:
        parts.append(f"{_cardinal(main)} {unit if main == 1 else units}")
    if cents:
        parts.append(f"{_cardinal(cents)} {sub if cents == 1 else subs}")
    words = " and ".join(parts)
    return f"minus {words}" if negative else words


def _expand_money(text: str) -> str:
    def prefix(m: re.Match[str]) -> str:
        amount = (m.group(1) or "") + m.group(3)
        return _money(amount, m.group(2), m.group(4) or m.group(5))

    def suffix(m: re.Match[str]) -> str:
        amount, symbol = m.group(1), m.group(2)
        if symbol == "¢":
            return f"{_read_number(amount)} cent" + ("" if amount == "1" else "s")
        return _money(amount, symbol, None)

    text = _sub(_CODE_BEFORE, text, lambda m: _money(m.group(2), _CURRENCY_CODES[m.group(1)], None))
    text = _sub(_CODE_AFTER, text, lambda m: _money(m.group(1), _CURRENCY_CODES[m.group(2)], None))
    text = _sub(_MONEY_PREFIX, text, prefix)
    return _sub(_MONEY_SUFFIX, text, suffix)


_PERCENT = re.compile(rf"({_SIGNED})\s?%")
_TEMPERATURE = re.compile(rf"({_SIGNED})\s?°\s?([CF])?(?![A-Za-z])")
_SCALE_NAMES = {"C": "Celsius", "F": "Fahrenheit"}

# abbreviation: (singular, plural); case matters ("MB" is not "mb").
_UNITS = {
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "mi": ("mile", "miles"),
    "ft": ("foot", "feet"),
    "kg": ("kilogram", "kilograms"),
    "g": ("gram", "grams"),
    "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
    "min": ("minute", "minutes"),
    "sec": ("second", "seconds"),
    "ms": ("millisecond", "milliseconds"),
    "kB": ("kilobyte", "kilobytes"),
    "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "kW": ("kilowatt", "kilowatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
}
_UNIT = re.compile(
    rf"({_SIGNED})\s?(" + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True)) + r")(?![\w/])"
)


def _is_one(amount: str) -> bool:
    return amount.lstrip("-") == "1"


def _expand_measures(text: str) -> str:
    def percent(m: re.Match[str]) -> str:
        return f"{_read_number(m.group(1))} percent"

    def temperature(m: re.Match[str]) -> str:
        amount = m.group(1)
        words = f"{_read_number(amount)} degree" + ("" if _is_one(amount) else "s")
        return f"{words} {_SCALE_NAMES[m.group(2)]}" if m.group(2) else words

    def unit(m: re.Match[str]) -> str:
        amount = m.group(1)
        singular, plural = _UNITS[m.group(2)]
        return f"{_read_number(amount)} {singular if _is_one(amount) else plural}"

    text = _sub(_PERCENT, text, percent)
    text = _sub(_TEMPERATURE, text, temperature)
    return _sub(_UNIT, text, unit)


# --------------------------------------------------------------------------
# Abbreviations
# --------------------------------------------------------------------------

# (pattern, expansion, can_end_sentence).  Titles, "e.g.", "vs." and "No." always lead into
# another word, so their period is never a full stop; "etc." or "Jr." may well end a sentence.
_ABBREVIATIONS = [
    (re.compile(r"\be\.g\.", re.I), "for example", False),
    (re.compile(r"\bi\.e\.", re.I), "that is", False),
    (re.compile(r"\ba\.k\.a\.", re.I), "also known as", False),
    (re.compile(r"\betc\.", re.I), "et cetera", True),
    (re.compile(r"\bvs\b\.?"), "versus", False),
    (re.compile(r"\bapprox\b\.?", re.I), "approximately", False),
    (re.compile(r"\b[Nn]o\.\s?(?=\d)"), "number ", False),
    (re.compile(r"\bMrs\.|\bMrs\b(?=\s+[A-Z])"), "Missus", False),
    (re.compile(r"\bMr\.|\bMr\b(?=\s+[A-Z])"), "Mister", False),
    (re.compile(r"\bMs\.|\bMs\b(?=\s+[A-Z])"), "Miz", False),
    (re.compile(r"\bProf\."), "Professor", False),
    (re.compile(r"\bMt\.(?=\s+[A-Z])"), "Mount", False),
    (re.compile(r"\bJr\."), "Junior", True),
    (re.compile(r"\bSr\."), "Senior", True),
    (re.compile(r"\bAve\."), "Avenue", True),
    (re.compile(r"\bRd\."), "Road", True),
    (re.compile(r"\bBlvd\."), "Boulevard", True),
    (re.compile(r"\bInc\."), "Incorporated", True),
    (re.compile(r"\bLtd\."), "Limited", True),
    (re.compile(r"\bCorp\."), "Corporation", True),
    (re.compile(r"\bDept\."), "Department", True),
]
_SAINT_OR_DOCTOR = re.compile(r"\b(St|Dr)\b(\.?)")


def _period_kept(m: re.Match[str], can_end: bool) -> str:
    """The abbreviation's period, when it was also the end of the sentence."""
    if not m.group(0).endswith("."):
        return ""
    if _AT_END.match(m.string, m.end()):
        return "."
    return "." if can_end and _ends_sentence(m.string, m.end()) else ""



def _name_like_before(text: str, start: int, sentence_start_counts: bool) -> bool:
    """Is the word before `start` a name ("Baker St.") or a house number / ordinal ("5th St.")?

    A capitalised word opening the sentence may be a name ("Elm Dr.") or just a capital
    ("Visit St. Paul"); the caller decides whether it counts.
    """
    before = _before(text, start).rstrip()
    m = re.search(r"(\S+)$", before)
    if not m:
        return False
    word = m.group(1)
    if re.fullmatch(r"\d+(?:st|nd|rd|th)?", word):
        return True
    if not (word[0].isupper() and word.isalpha()):
        return False
    return sentence_start_counts or not _sentence_start(text, m.start())


def _capitalised_after(text: str, end: int) -> bool:
    return _NEXT_CAPITAL.match(text, end) is not None


def _expand_abbreviations(text: str) -> str:
    for pattern, expansion, can_end in _ABBREVIATIONS:

        def expand(m: re.Match[str], expansion: str = expansion, can_end: bool = can_end) -> str:
            words = expansion
            if m.group(0)[0].isupper() and _sentence_start(m.string, m.start()):
                words = words[0].upper() + words[1:]  # "E.g." opening a sentence
            return words + _period_kept(m, can_end)

        text = _sub(pattern, text, expand)

    def saint_or_doctor(m: re.Match[str]) -> str | None:
        before_name = _capitalised_after(m.string, m.end())
        if m.group(1) == "St":
            # "Baker St." is a street; "St. Louis" is a saint.
            after_name = _name_like_before(m.string, m.start(), sentence_start_counts=False)
            if not m.group(2) and not (after_name or before_name):
                return None  # a bare "St" with no context is left alone
            if after_name or not before_name:
                return "Street" + _period_kept(m, True)
            return "Saint"
        # "Elm Dr." is a drive; "Dr. Smith" and "the Dr." are doctors.
        after_name = _name_like_before(m.string, m.start(), sentence_start_counts=True)
        if not m.group(2) and not (after_name or before_name):
            return None
        if after_name and not before_name:
            return "Drive" + _period_kept(m, True)
        return "Doctor" + _period_kept(m, False)

    return _sub(_SAINT_OR_DOCTOR, text, saint_or_doctor)


# --------------------------------------------------------------------------
# Symbols between numbers and words
# --------------------------------------------------------------------------

_FRACTION = re.compile(r"(?<![\w/.,])(\d)/(\d{1,2})(?![\w/]|\.\d)")
_FRACTION_NAMES = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def _fraction(m: re.Match[str]) -> str | None:
    numerator, denominator = int(m.group(1)), int(m.group(2))
    if not 0 < numerator < denominator <= 10:
        return None
    if denominator in _FRACTION_NAMES:
        singular, plural = _FRACTION_NAMES[denominator]
    else:
        singular = _ordinal(denominator)
        plural = singular + "s"
    return f"{_cardinal(numerator)} {singular if numerator == 1 else plural}"


# Signs that qualify the number after them; they must be read before the number becomes words.
_LEADING_SIGNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"#\s?(?=\d)"), " number "),
    (re.compile(r"~\s?(?=[-$€£¥₹]?\d)"), " about "),
    (re.compile(r"<\s?(?=[-$€£¥₹]?\d)"), " less than "),
    (re.compile(r">\s?(?=[-$€£¥₹]?\d)"), " more than "),
]


def _expand_leading_signs(text: str) -> str:
    for pattern, replacement in _LEADING_SIGNS:
        text = pattern.sub(replacement, text)
    return text


_SYMBOL_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?<=\d)\s?:\s?(?=\d)"), " to "),  # ratios; clock times are already words
    (re.compile(r"(?<=\d)\s?[x×]\s?(?=\d)"), " by "),  # 1920x1080
    (re.compile(r"(?<=\d)\s?[x×](?![\w])"), " times"),  # 2x faster
    (re.compile(r"×"), " times "),
    # A spaced hyphen between numbers is a subtraction inside an equation ("5 - 3 = 2"), else a range.
    (re.compile(r"(?<=\d)\s+-\s+(?=\d[\d.,\s]*=)"), " minus "),
    (re.compile(r"(?<=\d)\s+-\s+(?=\d)"), " to "),
    (re.compile(r"\s+-+\s+|--+"), ", "),  # a spaced hyphen or double hyphen is a dash
    (re.compile(r"&"), " and "),
    (re.compile(r"\+"), " plus "),
    (re.compile(r"="), " equals "),
    (re.compile(r"@"), " at "),
]
# Domain names: "example.com" -> "example dot com".
_DOMAIN = re.compile(r"(?<![\w.-])((?:[A-Za-z0-9-]+\.){1,4})(com|org|net|edu|gov|io|dev|ai|co|uk|de|fr|info)\b")


def _expand_symbols(text: str) -> str:
    text = _sub(_DOMAIN, text, lambda m: " dot ".join(m.group(1).rstrip(".").split(".") + [m.group(2)]))
    text = re.sub(r"\bhttps?://|\bwww\.", "", text)
    text = _sub(_FRACTION, text, _fraction)
    for pattern, replacement in _SYMBOL_RULES:
        text = pattern.sub(replacement, text)
    return text


# --------------------------------------------------------------------------
# Ordinals, decades, versions, plain numbers
# --------------------------------------------------------------------------

_ORDINAL = re.compile(rf"(?<![\w.,])({_INT})((?i:st|nd|rd|th))\b")
_DECADE = re.compile(r"(?<![\w.,])'?(\d{2}|\d{4})'?s\b")
_VERSION = re.compile(r"(?<![\w.,])\d+(?:\.\d+){2,}(?!\.?\d)")
_NUMBER = re.compile(rf"{_SIGNED}|(?<![\w.,])\.\d+")
_LEFTOVER = re.compile(r"\d+(?:\.\d+)*")
# A 4-digit number after these words is a count, not a year.
_QUANTITY_WORDS = {
    "about", "approximately", "over", "under", "than", "nearly", "almost",
    "exactly", "roughly", "only", "just", "some", "total",
}


def _decade(m: re.Match[str]) -> str | None:
    digits = m.group(1)
    if not digits.endswith("0") or digits.startswith("0"):
        return None
    words = _cardinal(int(digits)) if len(digits) == 2 else _year(int(digits))
    return _plural(words)


def _short_group(digits: str) -> str:
    # Numbers glued to letters ("MP3", "iPhone15", "A320"): short ones as numbers, long ones as digits.
    if len(digits) <= 3 and not (len(digits) > 1 and digits.startswith("0")):
        return _cardinal(int(digits))
    return _spell_digits(digits)


def _plain_number(m: re.Match[str]) -> str:
    token = m.group(0)
    if len(token) == 4 and token.isdigit() and 1100 <= int(token) <= 2099:
        previous = re.search(r"([A-Za-z]+)\W*$", _before(m.string, m.start()))
        if not (previous and previous.group(1).lower() in _QUANTITY_WORDS):
            return _year(int(token))
    return _read_number(token)


def _expand_numbers(text: str) -> str:
    text = _sub(_ORDINAL, text, lambda m: _ordinal(int(m.group(1).replace(",", ""))))
    text = _sub(_DECADE, text, _decade)
    text = _sub(_VERSION, text, lambda m: " point ".join(_short_group(g) for g in m.group(0).split(".")))
    text = _sub(_NUMBER, text, _plain_number)
    # Whatever digits the rules above could not place are still said, never passed to the voice raw.
    return _sub(_LEFTOVER, text, lambda m: " point ".join(_short_group(g) for g in m.group(0).split(".")))


# --------------------------------------------------------------------------
# Final tidy-up
# --------------------------------------------------------------------------

_LEFTOVER_SYMBOLS = {
    "%": " percent ", "°": " degrees ", "$": " dollar ", "€": " euro ", "£": " pound ",
    "¥": " yen ", "₹": " rupee ", "¢": " cent ",
    "[": "(", "{": "(", "]": ")", "}": ")",
}
_ALLOWED_PUNCTUATION = set(" .,!?;:'\"()-")


def _tidy(text: str) -> str:
    out = []
    for c in text:
        if c in _LEFTOVER_SYMBOLS:
            out.append(_LEFTOVER_SYMBOLS[c])
        elif c.isalpha() or c in _ALLOWED_PUNCTUATION:
            out.append(c)
        else:
            out.append(" ")  # / * ^ | \ ` _ < > # ~ and the like are not spoken
    text = "".join(out)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\(\s*\)", " ", text)
    text = re.sub(r"\(\s+", "(", text)
    text = re.sub(r"\s+([.,!?;:)])", r"\1", text)
    text = re.sub(r",(?:\s*,)+", ",", text)
    text = re.sub(r",\s*(?=[.!?;:])", "", text)  # a pause right before a stop adds nothing
    text = re.sub(r"([.!?;:])\s*,", r"\1", text)
    text = re.sub(r"([,;!?])(?=[^\W\d_])", r"\1 ", text)
    text = re.sub(r"^[\s,;:.!?]+", "", text)
    return re.sub(r"\s+", " ", text).strip()


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------

_STAGES: tuple[Callable[[str], str], ...] = (
    _clean_characters,
    _expand_leading_signs,
    _expand_dates,
    _expand_times,
    _expand_phone_numbers,
    _expand_ranges,
    _expand_money,
    _expand_measures,
    _expand_abbreviations,
    _expand_symbols,
    _expand_numbers,
    _tidy,
)


def _normalize(text: str) -> str:
    for stage in _STAGES:
        text = stage(text)
    return text


def _fallback(text: str) -> str:
    """Last resort if a rule ever breaks: letters and punctuation kept, digits spelled, nothing else."""
    try:
        kept = []
        for c in str(text):
            if c.isdigit() and c.isascii():
                kept.append(f" {_ONES[int(c)]} ")
            elif c.isascii() and (c.isalpha() or c in _ALLOWED_PUNCTUATION):
                kept.append(c)
            else:
                kept.append(" ")
        return " ".join("".join(kept).split())
    except Exception:
        return ""


def normalize(text: str) -> str:
    """Rewrite `text` as it should be spoken by an English TTS voice.

    Numbers, dates, times, money, units and common abbreviations become words;
    typographic characters become ASCII or pauses; unspeakable symbols are
    dropped.  Never raises; the result never contains ASCII digits.
    """
    try:
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        return _normalize(text)
    except Exception:  # a broken rule must not stop a render; the tests keep this path unused
        return _fallback(text)
