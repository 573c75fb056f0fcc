"""Safe evaluation of the arithmetic written in a model's answer (no ``eval``).

The answer verifier (``verifier_features``) recomputes the steps a model shows, such as
``16 - 3 = 13``, ``$1,100 - $400 = $700`` or GSM8K's ``<<9*2=18>>``, so it needs to read
numbers the way people write them (thousands commas, ``$``, ``%``, ``1/4``) and the operators
models use (``*``, ``\\*``, ``x``, the multiplication and division signs, ``^``).
``evaluate`` is a small recursive-descent parser over exact fractions: only numbers, the four
operations, powers with small integer exponents, unary minus and parentheses; anything else
(words, units between numbers, huge exponents, more than ``MAX_TOKENS`` tokens) is "not an
expression" (None), never an error and never code execution.
"""

from __future__ import annotations

import re
from fractions import Fraction

#: One token: a number (thousands commas allowed, optional decimals, optional %), an
#: operator or a parenthesis. ``$`` and spaces are skipped; anything else stops the parse.
_TOKEN = re.compile(
    r"\s*(?:\$\s*)?(?:(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)\s*(?P<pct>%)?"
    r"|(?P<op>\\\*|[-+*/x\u00d7\u00f7^()\u2212\u2013]))"
)
_OPS = {"\\*": "*", "x": "*", "\u00d7": "*", "\u00f7": "/", "\u2212": "-", "\u2013": "-"}
#: Exponents above this are not arithmetic a word problem shows (and would cost time).
_MAX_EXPONENT = 12
#: Results bigger than this are not compared (a parse gone wrong, not a step).
_MAX_MAGNITUDE = Fraction(10) ** 15
#: Longer expressions are not a step of a word problem; the cap also bounds the parser's
#: recursion (nested parentheses) and its time.
MAX_TOKENS = 64
#: Digits in one number (more is not a quantity, and ``int`` refuses > 4,300 digits).
_MAX_DIGITS = 24
_PLAIN = re.compile(r"\d+(?:\.\d+)?|\.\d+")
#: ``close``: within 0.006 plus 0.01 % (two written decimals), or within 1 % when one side
#: is not whole (a rounded result).
_ABSOLUTE = Fraction(6, 1000)
_RELATIVE = Fraction(1, 10_000)
_ROUNDED = Fraction(1, 100)


def parse_number(text: str) -> Fraction | None:
    """``"$1,100"``, ``"12.5"``, ``"40%"`` (-> 0.4 is *not* applied: a written percentage is
    kept as the number 40, as the answers compare it), ``"-3"`` -> the value; else None."""
    cleaned = text.strip().replace("$", "").replace(",", "").rstrip("%").strip()
    negative = cleaned.startswith(("-", "\u2212"))
    if negative:
        cleaned = cleaned[1:].strip()
    if not cleaned or len(cleaned) > _MAX_DIGITS or not _PLAIN.fullmatch(cleaned):
        return None
    value = _fraction(cleaned)
    return -value if negative else value


def _fraction(digits: str) -> Fraction:
    """``Fraction`` of a plain decimal string (an ``int`` first: parsing a string is slow)."""
    return Fraction(int(digits)) if "." not in digits else Fraction(digits)


def tokens(text: str) -> list[str] | None:
    """The tokens of ``text`` (numbers as plain strings, ``%`` folded into ``/100`` only when
    it follows an operand inside a product), or None when some character is not arithmetic."""
    out: list[str] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if m is None or m.end() == pos:
            return None
        if m.group("num") is not None:
            out.append(m.group("num").replace(",", ""))
            if m.group("pct"):
                out.append("%")
        else:
            op = m.group("op")
            out.append(_OPS.get(op, op))
        pos = m.end()
    return out


class _Parser:
    """expr := term (('+'|'-') term)*; term := unary (('*'|'/') unary)*;
    unary := '-' unary | power; power := atom ('^' unary)?; atom := number '%'? | '(' expr ')'.
    A number followed by ``%`` inside a product or quotient means /100 (``20% * 50``); a lone
    ``40%`` stays 40 (how answers write a percentage result)."""

    def __init__(self, toks: list[str], percent: str = "product") -> None:
        self.toks = toks
        self.i = 0
        #: How ``N%`` reads: "product" (/100 inside a product, else N), "always" (/100),
        #: "never" (N): answers use all three, so a check accepts any of them.
        self.percent = percent

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            if self.take() == "+":
                value += self.term()
            else:
                value -= self.term()
        return value

    def term(self) -> Fraction:
        value, pct = self.unary()
        scaled = False
        while self.peek() in ("*", "/"):
            if pct and not scaled:
                value /= 100
                scaled = True
            op = self.take()
            right, right_pct = self.unary()
            if right_pct:
                right /= 100
            if op == "*":
                value *= right
            elif right == 0:
                raise ArithmeticError("division by zero")
            else:
                value /= right
        return value

    def unary(self) -> tuple[Fraction, bool]:
        if self.peek() == "-":
            self.take()
            value, pct = self.unary()
            return -value, pct
        return self.power()

    def power(self) -> tuple[Fraction, bool]:
        base, pct = self.atom()
        if self.peek() == "^":
            self.take()
            exponent, _ = self.unary()
            if exponent.denominator != 1 or abs(exponent) > _MAX_EXPONENT:
                raise ArithmeticError("exponent out of range")
            if base == 0 and exponent < 0:
                raise ArithmeticError("division by zero")
            return base ** int(exponent), False
        return base, pct

    def atom(self) -> tuple[Fraction, bool]:
        tok = self.peek()
        if tok is None:
            raise ArithmeticError("unexpected end")
        if tok == "(":
            self.take()
            value = self.expr()
            if self.peek() != ")":
                raise ArithmeticError("unbalanced parenthesis")
            self.take()
            return value, False
        if tok[0].isdigit() or tok[0] == ".":
            self.take()
            value = _fraction(tok)
            pct = self.peek() == "%"
            if pct:
                self.take()
                if self.percent == "always":
                    return value / 100, False
                if self.percent == "never":
                    return value, False
            return value, pct
        raise ArithmeticError(f"unexpected {tok!r}")


def evaluate(text: str, percent: str = "product") -> Fraction | None:
    """The exact value of the arithmetic expression ``text``; None when it is not one (words,
    an operator without operands, division by zero, an exponent out of range). ``percent``:
    how ``N%`` reads (see ``_Parser``)."""
    if len(text) > 8 * MAX_TOKENS:
        return None
    toks = tokens(text)
    if not toks or len(toks) > MAX_TOKENS or any(len(t) > _MAX_DIGITS for t in toks):
        return None
    parser = _Parser(toks, percent)
    try:
        value = parser.expr()
    except (ArithmeticError, IndexError, ValueError, ZeroDivisionError):
        return None
    if parser.i != len(toks) or abs(value) > _MAX_MAGNITUDE:
        return None
    return value


def readings(text: str) -> set[Fraction]:
    """Every value ``text`` has under the three readings of ``%`` (one value without ``%``)."""
    if "%" not in text:
        value = evaluate(text)
        return set() if value is None else {value}
    values = (evaluate(text, mode) for mode in ("product", "always", "never"))
    return {v for v in values if v is not None}


def has_operator(text: str) -> bool:
    """Whether ``text`` (an expression) does any arithmetic rather than restating a number."""
    if len(text) > 8 * MAX_TOKENS:
        return False
    toks = tokens(text)
    if not toks:
        return False
    return any(t in ("+", "*", "/", "^") for t in toks) or "-" in toks[1:]


def close(a: Fraction, b: Fraction) -> bool:
    """Equal up to the rounding a written answer does: 2 decimals, or 1 % relative for
    large values (``33.33`` for 100/3 and ``1,667`` for 5000/3 both count as right)."""
    if a == b:
        return True
    diff = abs(a - b)
    size = abs(b)
    if diff <= max(1, size) * _RELATIVE + _ABSOLUTE:
        return True
    return (a.denominator != 1 or b.denominator != 1) and diff <= _ROUNDED * size


__all__ = ["close", "evaluate", "has_operator", "parse_number", "readings", "tokens"]
