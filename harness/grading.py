"""Grading: is an extracted answer equivalent to any gold answer? Plus the pool that makes it safe and fast.

Graders are pure, picklable functions `(golds, answer) -> bool` registered by name, so a worker process
can look one up from the name alone. The "math" grader is math-verify used as variants.md 1.1 says:
`verify(gold, pred)` with the gold first (it is not symmetric: a gold `1<x<2` accepts the answer
`(1,2)`, a gold `(1,2)` rejects `1<x<2`), the prediction parsed with open-r1's settings. Two documented
deviations: `malformed_operators=True` for the prediction, because `\\frac12` and `\\sqrt2` are valid
TeX that the open-r1 setting cannot parse (graded wrong there); and no `equations=True`, which
math-verify 0.9 deprecates because its parser now handles equations itself.

`GradingPool` (harness/grading_pool.py) runs these graders in worker processes with a hard per-item time
limit; this module knows nothing of it.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import threading
import zlib
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache

from harness.extraction import normalize_relation
from harness.registry import Registry, UnknownNameError

logger = logging.getLogger(__name__)

Grader = Callable[[tuple[str, ...], str], bool]

GRADERS: Registry[Grader] = Registry("grader")

# math-verify's own (SIGALRM) limit per parse/compare, in whole seconds. It lets a worker give up on slow
# pure-Python sympy work without being killed and respawned; the pool's hard limit covers everything else.
MATH_VERIFY_TIMEOUT_S = 3
# Relative tolerance for decimal golds (Minerva states physical quantities to 2-3 significant figures and
# writes 8.7e8 for 8.7 x 10^8). Exact golds (integers, fractions, surds) get none beyond math-verify's own.
DECIMAL_GOLD_REL_TOL = 1e-4


def _math_verify_timeout() -> int | None:
    """SIGALRM can only be armed from the main thread; elsewhere the caller must bound the time itself."""
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


# ------------------------------------------------------------------------------------- parse speed-ups
# Parsed LaTeX a worker keeps. math-verify caches only its last 20 parses, keyed by the normalised string; a
# worker sees thousands of answers and golds whose normalised forms repeat (\dfrac and \frac, \left( and ().
PARSE_CACHE_SIZE = 1 << 14


def speed_up_parsing() -> None:
    """Make this process's LaTeX parsing faster without changing any result; grading workers call it.

    - ANTLR's two-stage strategy: predict with SLL first, which (ANTLR's documented guarantee) either gives
      the tree full LL prediction gives or reports a syntax error, and parse again with a fresh LL parser only
      after an error. Only the parse tree is retried; its conversion to sympy runs once.
      latex2sympy predicts with LL throughout; SLL takes about 30% off parsing MATH-style answers.
    - math-verify's parse cache (a pure function of the normalised string) grows from 20 entries to
      PARSE_CACHE_SIZE, so an answer that normalises like one seen before is not parsed again.

    Both reach into library internals (latex2sympy2_extended 1.x, math-verify 0.9); where those are not as
    expected, the library is left as it is. tests/test_grading.py checks both paths give the same results.
    """
    global _parsing_sped_up
    if _parsing_sped_up:
        return
    _parsing_sped_up = True
    try:
        import math_verify.parser as math_verify_parser
        from antlr4.atn.PredictionMode import PredictionMode
        from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy
    except ImportError:
        return
    cached = math_verify_parser.parse_latex_cached
    if hasattr(cached, "__wrapped__") and hasattr(cached, "cache_info"):
        math_verify_parser.parse_latex_cached = lru_cache(maxsize=PARSE_CACHE_SIZE)(cached.__wrapped__)
    if not callable(getattr(_Latex2Sympy, "create_parser", None)):
        return
    create_parser = _Latex2Sympy.create_parser

    def create_two_stage_parser(self, latex_str):
        parser = create_parser(self, latex_str)
        parser._interp.predictionMode = PredictionMode.SLL
        sll_math = parser.math

        def math():  # the parse tree only: converting it to sympy happens once, after, as before
            try:
                return sll_math()
            except Exception:  # a syntax error under SLL (or in the input): a fresh parser with full LL decides
                return create_parser(self, latex_str).math()

        parser.math = math
        return parser

    _Latex2Sympy.create_parser = create_two_stage_parser


_parsing_sped_up = False


# ------------------------------------------------------------------------------------------- screening
# Answers that would send sympy into minutes of work or gigabytes, told apart from the gold by their shape
# alone, are graded wrong before any worker sees them (a few microseconds, not a time limit each).
SCREENED_GRADERS = ("math", "number")
# A power whose value has more than this many digits is not computed by anyone's grader in seconds.
MAX_POWER_DIGITS = 10_000
_NUMBER_AT = re.compile(r"\s*\(?\s*(\d+)\s*\)?")
_CARET = re.compile(r"\s*\^\s*")
_CLOSE = re.compile(r"\s*\}")
_NUMERIC_BASE = re.compile(r"(?<![\w.\\])\d+\s*\)?\s*\^")
# A symbolic base ((x+1), y) raised to a literal exponent of five or more digits: a polynomial expansion.
_SYMBOLIC_HUGE_POWER = re.compile(r"(?:[A-Za-z]|\))\s*\^\s*\{?\s*(\d{5,})")
_TRIVIAL_BASE = re.compile(r"\(\s*-?\s*[01]\s*\)\s*\^\s*\{?\s*\d+\s*\}?$")


def _log10_power(text: str, pos: int) -> tuple[float, int] | None:
    """(log10 of the value, end) of the numeric power tower starting at `pos` (2^{3^{4}}, 9^9), or None where
    it is not one. Bases 0 and 1 give 0 whatever the exponent; values past 10^300 in an exponent count as
    infinite."""
    number = _NUMBER_AT.match(text, pos)
    if number is None:
        return None
    base, end = int(number.group(1)), number.end()
    caret = _CARET.match(text, end)
    if caret is None:
        return (math.log10(base) if base > 1 else 0.0), end
    end = caret.end()
    if text.startswith("{", end):
        inner = _log10_power(text, end + 1)
        close = _CLOSE.match(text, inner[1]) if inner else None
        if close is None:
            return None
        log_exponent, end = inner[0], close.end()
    elif end < len(text) and text[end].isdigit():  # 2^3: a single-character exponent
        log_exponent, end = (math.log10(int(text[end])) if text[end] != "0" else float("-inf")), end + 1
    else:
        return None
    if base <= 1:
        return 0.0, end
    exponent = 10**log_exponent if log_exponent < 300 else float("inf")
    return exponent * math.log10(base), end


def _huge_power(text: str) -> bool:
    for match in _NUMERIC_BASE.finditer(text):
        found = _log10_power(text, match.start())
        if found is not None and found[0] > MAX_POWER_DIGITS:
            return True
    return any(not _TRIVIAL_BASE.search(text[: m.end()]) for m in _SYMBOLIC_HUGE_POWER.finditer(text))


def _brace_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "}":
            depth -= 1
    return deepest


# Screen reasons that hold whatever the other side is: clustering (which compares two sampled answers, not an
# answer with a gold) skips answers rejected for these.
ABSOLUTE_REASONS = ("unbalanced braces", "a huge power")


def screen(grader: str, golds: Sequence[str], answer: str) -> str | None:
    """Why `answer` can be graded wrong without a symbolic comparison, or None. Only shapes no gold shares are
    screened: an answer as long as 50 golds (and 500 characters), unbalanced braces, braces nested 10 deep
    and 5 deeper than any gold's (chains of \\frac or \\sqrt), a power whose value has more than 10,000
    digits (9^{9^{9}}; (x+1)^{100000}) where no gold has one. Bases 0 and 1 ((-1)^{2024}) are not screened."""
    if grader not in SCREENED_GRADERS or not golds:
        return None
    if len(answer) > 50 * max(len(g) for g in golds) + 500:
        return "far longer than the gold"
    if answer.count("{") != answer.count("}"):
        return "unbalanced braces"
    nesting = _brace_depth(answer)
    if nesting >= 10 and nesting >= max(_brace_depth(g) for g in golds) + 5:
        return "deeply nested"
    if _huge_power(answer) and not any(_huge_power(g) for g in golds):
        return "a huge power"
    return None


# ------------------------------------------------------------------------------------------------ math
_SCIENTIFIC = re.compile(r"(?<![\w.\\])(\d+(?:\.\d+)?)\s*[eE]\s*([+-]?\d+)(?![\w.])")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def _clean_latex(text: str) -> str:
    """What math-verify cannot be asked to undo: stray `$` inside an answer (OlympiadBench's "69$,$84"),
    code-style scientific notation (Minerva's "8.7e8", which LaTeX would read as 8.7*e*8), a final full
    stop."""
    text = _UNESCAPED_DOLLAR.sub("", text).strip().rstrip(".").strip()
    return _SCIENTIFIC.sub(r"\1 \\times 10^{\2}", text)


@lru_cache(maxsize=1 << 14)
def _parse_gold(gold: str) -> tuple:
    from math_verify import parse

    parsed = parse("\\boxed{" + _clean_latex(gold) + "}", parsing_timeout=_math_verify_timeout())
    if not parsed:
        # variants.md 1.1: an unparseable gold is skipped (open-r1 returns None), never rewarded.
        logger.warning("gold answer %r cannot be parsed by math-verify; answers to it are graded wrong", gold)
    return tuple(parsed)


@lru_cache(maxsize=1)
def answer_extraction_config():
    """variants.md 1.1's prediction settings, with the two deviations the module docstring explains."""
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import LatexExtractionConfig

    return LatexExtractionConfig(
        normalization_config=NormalizationConfig(nits=False, malformed_operators=True, basic_latex=True,
                                                 boxed="all", units=True),
        boxed_match_priority=0, try_extract_without_anchor=False)


def load_parsers() -> None:
    """Import sympy, math-verify and the LaTeX parser now (seconds), so that a grading worker's first deadline
    times grading, not imports."""
    _parse_answer("0")


@lru_cache(maxsize=1 << 16)
def _parse_answer(answer: str) -> tuple:
    from math_verify import parse

    config = answer_extraction_config()
    return tuple(parse("\\boxed{" + _clean_latex(answer) + "}", extraction_config=[config],
                       parsing_timeout=_math_verify_timeout()))


_INTEGER = re.compile(r"-?\d+")


# A plain rational as a model or a gold writes one: an integer, (-)\frac{a}{b} (also \dfrac, \tfrac) or a/b,
# with a nonzero denominator. math-verify parses each to the sympy Rational of the same value and, with no
# Float on either side, compares two Rationals exactly (sympy_numeric_eq's `a == b`, then simplify(a - b)),
# so Fraction equality is its verdict. Deliberately narrow: no decimals (math-verify rounds them to 6
# places), no mixed numbers (it reads 2\frac{1}{2} as 5/2), no \frac12 shorthand, at most 30 digits a number.
# tests/test_grading.py checks the agreement on tricky cases.
_RATIONAL = re.compile(r"(-?\d{1,30})|(-?)\s*\\[dt]?frac\s*\{\s*(-?\d{1,30})\s*\}\s*\{\s*(\d{1,30})\s*\}"
                       r"|(-?\d{1,30})\s*/\s*(\d{1,30})")


def _rational(text: str) -> Fraction | None:
    """The value of a plain rational (see _RATIONAL) after _clean_latex, or None for anything else."""
    match = _RATIONAL.fullmatch(_clean_latex(text))
    if match is None:
        return None
    integer, sign, numerator, denominator, slash_numerator, slash_denominator = match.groups()
    if integer is not None:
        return Fraction(int(integer))
    numerator, denominator = int(numerator or slash_numerator), int(denominator or slash_denominator)
    if denominator == 0:
        return None  # math-verify's zoo, which it refuses to compare
    return Fraction(-numerator if sign else numerator, denominator)


def _same_text(a: str, b: str) -> bool:
    return a.split() == b.split()  # runs of white space mean one space in LaTeX


def _is_decimal(gold: str) -> bool:
    return bool(re.fullmatch(r"-?\d*\.\d+|-?\d+(?:\.\d+)?\s*\\times\s*10\^\{?-?\d+\}?", _clean_latex(gold)))


def _close_decimals(gold: tuple, pred: tuple) -> bool | None:
    """Relative-tolerance match of two real numbers, or None when either is not a number.

    Decides decimal golds on its own: math-verify rounds to 6 decimal places, which would call any two
    numbers below 5e-7 equal (Minerva's 2.88e-19 J and 3.99e-20 J).
    """
    try:
        g, p = float(gold[0]), float(pred[0])
    except (TypeError, ValueError, IndexError, AttributeError):
        return None
    return math.isfinite(g) and math.isfinite(p) and math.isclose(g, p, rel_tol=DECIMAL_GOLD_REL_TOL)


@GRADERS.register("math")
def grade_math(golds: tuple[str, ...], answer: str) -> bool:
    """math-verify equivalence against any gold, gold first; a decimal gold and a numeric answer are compared
    with a relative tolerance instead."""
    needs_verify = []
    for gold in golds:
        if _same_text(gold, answer):
            return True  # the reference answer itself: nothing to parse
        if _INTEGER.fullmatch(gold.strip()) and _INTEGER.fullmatch(answer.strip()):
            if int(gold) == int(answer):  # what math-verify concludes for two integers, ~1000x faster
                return True
            continue
        exact = _rational(gold), _rational(answer)
        if None not in exact:
            if exact[0] == exact[1]:  # likewise for two plain fractions: no parse, no sympy
                return True
            continue
        needs_verify.append(gold)
    pred = _parse_answer(answer) if needs_verify else ()
    if not pred:
        return False
    for gold in needs_verify:
        parsed_gold = _parse_gold(gold)
        if not parsed_gold:
            continue
        close = _close_decimals(parsed_gold, pred) if _is_decimal(gold) else None
        if close is not None:
            if close:
                return True
        elif _verify(parsed_gold, pred):
            return True
    return False


def _verify(gold: tuple, pred: tuple) -> bool:
    """math-verify's verify(gold, pred), which is any() over the product of the two parse lists, with the
    pairs that evaluate apart (see _values_apart) answered False without sympy's simplify: proving wrong
    answers wrong is most of a MATH-style workload's comparison time."""
    from math_verify import verify

    return any(not _values_apart(g, p) and verify([g], [p], timeout_seconds=_math_verify_timeout())
               for g, p in itertools.product(gold, pred))


# Elementary functions whose sympy simplification holds on the whole real line (principal branches), so a
# difference that is nonzero at one real point cannot simplify to zero.
_ELEMENTARY = frozenset({"exp", "log", "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "acot",
                         "sinh", "cosh", "tanh", "Abs", "sign", "floor", "ceiling", "Min", "Max"})
# How far apart two values must be, relative to the larger magnitude and at least 1, to count as different:
# far beyond math-verify's own rounding of floats (6 decimal places) and 30-digit evaluation error.
VALUES_APART = 1e-4


def _values_apart(gold, pred) -> bool:
    """True when gold and pred are plain real expressions (numbers, real variables, + - * / powers, the
    elementary functions above) whose values at one real point differ by more than VALUES_APART: then
    math-verify's answer for them, numeric rounding or simplify(gold - pred) == 0, is no.

    Everything else (relations, sets, tuples, matrices, lone symbols it compares by name, percentages it
    counts equal to their number, sums and integrals whose identities need integer variables) is left
    to math-verify, as is any pair whose values at the point are close, cannot be computed within
    math-verify's own time limit, or that math-verify's 15-digit evaluation calls equal (it chops tiny
    intermediate values to zero: 10^20 sin(10^-20) "equals" 10^20 sin(2 10^-20) to it)."""
    from math_verify.errors import TimeoutException
    from math_verify.utils import timeout

    if gold is pred or not (_plain_real(gold) and _plain_real(pred)):
        return False
    try:
        return timeout(timeout_seconds=_math_verify_timeout())(_evaluated_apart)(gold, pred)
    except TimeoutException:
        return False
    except Exception:  # anything sympy cannot evaluate is left to math-verify
        return False


def _evaluated_apart(gold, pred) -> bool:
    import mpmath

    point = {symbol: _point_value(symbol.name) for expr in (gold, pred) for symbol in expr.free_symbols}
    values = []
    for expr in (gold, pred):
        value = expr.evalf(30, subs=point)
        if not value.is_number:
            return False
        real, imaginary = value.as_real_imag()
        if not (real.is_Float or real.is_zero) or not (imaginary.is_Float or imaginary.is_zero):
            return False
        values.append(mpmath.mpc(real._to_mpmath(110) if real.is_Float else 0,
                                 imaginary._to_mpmath(110) if imaginary.is_Float else 0))
    a, b = values
    if not all(mpmath.isfinite(v) for v in values) or abs(a - b) <= VALUES_APART * max(1, abs(a), abs(b)):
        return False
    return (gold - pred).evalf(chop=True, n=15) != 0  # math-verify's own numeric test, as sympy_numeric_eq runs it


def _plain_real(expr) -> bool:
    from sympy import Add, Expr, Mul, Number, NumberSymbol, Pow, Symbol, UnevaluatedExpr, preorder_traversal
    from sympy.core.function import AppliedUndef

    if not isinstance(expr, Expr) or isinstance(expr, Symbol) or getattr(expr, "is_Matrix", False):
        return False
    for node in preorder_traversal(expr):
        if isinstance(node, (Add, Mul, Pow, Number, NumberSymbol)):
            continue
        if isinstance(node, Symbol):
            if node.assumptions0 != _real_symbol_assumptions():
                return False  # integer, positive or complex variables: identities the point cannot see
            continue
        if isinstance(node, (UnevaluatedExpr, AppliedUndef)) or type(node).__name__ not in _ELEMENTARY:
            return False
    return True


@lru_cache(maxsize=1)
def _real_symbol_assumptions() -> dict:
    from sympy import Symbol

    return Symbol("x", real=True).assumptions0


def _point_value(name: str):
    """A generic real value for a variable, the same for the same name on both sides: in (0.3, 2.3), away from
    the integers and simple fractions that make unequal expressions agree."""
    from sympy import Float

    return Float(0.3 + 2 * (zlib.crc32(name.encode()) % 99991) / 99991 + 1e-7 * math.pi, 30)


# ---------------------------------------------------------------------------------------------- choice
@GRADERS.register("choice")
def grade_choice(golds: tuple[str, ...], answer: str) -> bool:
    """IneqMath relation: the answer's option letter or relation symbol equals a gold's, once normalised.

    Golds carry both the letter and its symbol ("D", "<"), so "D", "(D) $<$" and "<" are all right.
    """
    chosen = normalize_relation(answer)
    return chosen is not None and any(normalize_relation(gold) == chosen for gold in golds)


# ---------------------------------------------------------------------------------------------- number
_FONT_WRAPPER = re.compile(r"\\(?:text|textbf|mathbf|mathrm|mbox)\s*\{([^{}]*)\}")


def _plain_number(text: str) -> Decimal | None:
    """The number a GSM8K/AIME-style answer states ("1,080", "\\$18.", "\\textbf{(073)}"), or None."""
    cleaned = _FONT_WRAPPER.sub(r"\1", text).replace("\\$", "").replace("$", "")
    cleaned = re.sub(r"(?<=\d),(?=\d{3}\b)", "", cleaned).strip().rstrip(".").strip()
    cleaned = re.sub(r"^\((.*)\)$", r"\1", cleaned).strip()  # AoPS writes AIME answers as (073)
    if not re.fullmatch(r"-?(?:\d+(?:\.\d*)?|\.\d+)", cleaned):
        return None
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


@GRADERS.register("number")
def grade_number(golds: tuple[str, ...], answer: str) -> bool:
    """Exact numeric equality (GSM8K: "1080" == "1,080" == "1080.00"); anything else goes to "math"."""
    value = _plain_number(answer)
    for gold in golds:
        gold_value = _plain_number(gold)
        if value is not None and gold_value is not None:
            if value == gold_value:
                return True
        elif grade_math((gold,), answer):
            return True
    return False


def resolve_grader(name: str) -> Grader:
    """A grader by name; plugin tasks may register their graders when the task registry loads."""
    try:
        return GRADERS.get(name)
    except UnknownNameError:
        from harness.task import TASKS

        TASKS.names()  # imports built-in and plugin tasks, which register the graders they use
        return GRADERS.get(name)


def grade(grader: str, golds: Sequence[str], answer: str | None) -> bool:
    """Grade one answer in this process (tests, notebooks). No hard time limit: use GradingPool for runs."""
    if answer is None:
        return False
    return bool(resolve_grader(grader)(tuple(golds), answer))


def grade_safely(grader: str, golds: tuple[str, ...], answer: str) -> bool:
    try:
        return grade(grader, golds, answer)
    except Exception:  # a grader bug or a sympy crash on one answer must not stop the run
        logger.warning("grader %r raised on answer %r; graded wrong", grader, answer, exc_info=True)
        return False
