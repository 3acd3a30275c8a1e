"""Answer extraction: turn a model's completion into the short answer string a grader compares.

Extraction is kept apart from grading so that a stored run can be re-graded with a better grader, and so
that the cheap, pure-string step runs in the parent process while only the expensive symbolic comparison
goes to grader workers. Every extractor returns None when the completion holds no answer; a None is
graded wrong without being sent anywhere.

The preprocessing shared by all formats follows variants.md 1.1: cut at the first stop string, look
only after `</think>` in R1-style completions (an unclosed `<think>` means the model never answered),
and prefer the content of the last `<answer>...</answer>` block when there is one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from harness.registry import Registry

Extractor = Callable[[str], "str | None"]

EXTRACTORS: Registry[Extractor] = Registry("answer format")

# Chat-template end markers. Text after them is not the model's answer (a sampler that ignored the stop
# token keeps generating a fake next turn, whose \boxed would otherwise be taken as the answer).
STOP_STRINGS = ("<|im_end|>", "</s>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>")

_BOX_OPENERS = re.compile(r"\\(?:boxed|fbox)\s*\{")


EXTRACTION_MODES = ("strict", "lenient")


def extract(text: str, answer_format: str, mode: str = "strict") -> str | None:
    """The answer in `text` under the named format ("boxed", "relation", "last_number", ...), or None.

    mode "strict" reads only what the format asks for (the last \\boxed{} for "boxed"); "lenient" serves
    outputs that were not written for this harness (`extract_lenient`). The other formats already read
    their own stated forms ("the answer is (D)", "$C = 2$", the last number), so lenient changes only "boxed".
    """
    if text is None:
        return None
    if mode not in EXTRACTION_MODES:
        raise ValueError(f"extraction mode {mode!r} is not one of {', '.join(EXTRACTION_MODES)}")
    if mode == "lenient" and answer_format == "boxed":
        return extract_lenient(text)
    return EXTRACTORS.get(answer_format)(text)


def answer_region(text: str) -> tuple[str, bool] | None:
    """(The part of a completion that may hold the final answer, whether it is an <answer> block), or None
    when the completion cannot hold an answer.

    R1-style: everything before `</think>` is reasoning, so a \\boxed there is a draft, not the answer;
    a `<think>` that is never closed means the completion was cut off while thinking. Templates that put
    `<think>` into the prompt leave only `</think>` in the completion, which the same rule handles.
    """
    for stop in STOP_STRINGS:
        cut = text.find(stop)
        if cut != -1:
            text = text[:cut]
    if "</think>" in text:
        text = text[text.rfind("</think>") + len("</think>"):]
    elif "<think>" in text:
        return None
    start = text.rfind("<answer>")
    if start == -1:
        return text, False
    text = text[start + len("<answer>"):]
    end = text.find("</answer>")  # may be missing when </answer> was used as a stop string
    return (text if end == -1 else text[:end]), True


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` or `\\fbox{...}`, matching nested braces; None if there is none.

    A last box cut off before its closing brace is no answer: an earlier box was a draft the model went
    past, so rewarding it would reward a truncated completion.
    """
    openers = list(_BOX_OPENERS.finditer(text))
    if not openers:
        return None
    depth, start = 1, openers[-1].end()
    for i in range(start, len(text)):
        char = text[i]
        if char == "{" and text[i - 1] != "\\":
            depth += 1
        elif char == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


@EXTRACTORS.register("boxed")
def extract_boxed(text: str) -> str | None:
    """Last \\boxed{} of the answer region; inside an <answer> block without a box, the block itself."""
    found = answer_region(text)
    if found is None:
        return None
    region, tagged = found
    boxed = last_boxed(region)
    if boxed is None and tagged:
        boxed = region  # R1 style allows a bare answer inside <answer> tags
    if boxed is None:
        return None
    boxed = boxed.strip()
    return boxed or None


# ------------------------------------------------------------------------------------------ lenient
# A statement of the answer: "final answer is / :" anywhere; "the (our, my) answer is"; "Answer:" opening a
# line (not "check our answer: ...", which introduces a verification).
_STATEMENT = re.compile(r"final\s+answer\s*(?:\*\*)?\s*(?:is\b|:)\s*(?:\*\*)?\s*:?"
                        r"|\b(?:the|our|my)\s+answer\s+is\b\s*:?"
                        r"|^[ \t>*_#]*answer\s*(?:\*\*)?\s*:\s*(?:\*\*)?", re.IGNORECASE | re.MULTILINE)
# What may stand between boxes that together are one answer: "\\boxed{1}, \\boxed{-2}", "$\\boxed{1}$ and $\\boxed{2}$".
# Not "or": boxes joined by "or" are usually one answer written two ways (15\\frac{39}{40} or \\frac{639}{40}).
_BETWEEN_PARTS = re.compile(r"^(?:\s|\$|,|;|\\quad|\\qquad|\\text\{\s*and\s*\}|\band\b)*$")
_MATH_SPANS = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|\$([^$]+?)\$", re.DOTALL)
# A full stop followed by a space or the end ("3. I hope it is correct" ends after 3; 3.5 does not end).
_SENTENCE_END = re.compile(r"(?<!\\)\.(?=\s|$)|\n")
_LEADING_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?(?![\d/])")
_LEADING_CHOICE = re.compile(r"\(?([A-F])\)?(?![A-Za-z])")
# A statement inside a verification ("let's double-check the final answer: 5 x 2 = 10") states no answer.
_CHECKING = re.compile(r"check|verif|confirm|plug", re.IGNORECASE)


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every complete \\boxed{} / \\fbox{}, in order."""
    found = []
    for opener in _BOX_OPENERS.finditer(text):
        depth, start = 1, opener.end()
        for i in range(start, len(text)):
            if text[i] == "{" and text[i - 1] != "\\":
                depth += 1
            elif text[i] == "}" and text[i - 1] != "\\":
                depth -= 1
                if depth == 0:
                    found.append((opener.start(), i + 1, text[start:i]))
                    break
    return found


def _last_box_group(text: str) -> tuple[int, str] | None:
    """(start, answer) of the last box, joined with the boxes just before it that are parts of one answer."""
    boxes = _boxes(text)
    if not boxes:
        return None
    group = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        if not _BETWEEN_PARTS.match(text[box[1]:group[0][0]]):
            break
        group.insert(0, box)
    parts = [content.strip() for _, _, content in group if content.strip()]
    return (group[0][0], ", ".join(parts)) if parts else None


def _strip_wrappers(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    for span in _MATH_SPANS.finditer(answer):
        if span.start() == 0 and span.end() == len(answer):
            answer = next(g for g in span.groups() if g is not None)
            break
    answer = _TEXT_WRAPPER.sub(r"\1", answer) if answer.startswith("\\text") else answer
    return answer.strip().rstrip(".").strip()


def _stated_answer(tail: str, loose: bool) -> str | None:
    """The answer a statement's tail opens with: a box, a math span, a number or a choice letter ("$\\dfrac34$,
    which is correct" -> \\dfrac34; "72 clips" -> 72). `loose`: otherwise the whole tail, if it has a digit
    or some LaTeX ("x = 3")."""
    tail = tail.strip().lstrip("*").strip()
    boxed = _last_box_group(tail)
    if boxed is not None and boxed[0] <= 2:
        return boxed[1]
    span = _MATH_SPANS.match(tail)
    if span:
        return next(g for g in span.groups() if g is not None).strip() or None
    number = _LEADING_NUMBER.match(tail)
    if number:
        return _clean_number(number.group(0)) if "/" not in number.group(0) else number.group(0).replace(" ", "")
    choice = _LEADING_CHOICE.match(tail)
    if choice:
        return choice.group(0)
    answer = _strip_wrappers(tail)
    return answer if loose and answer and len(answer) <= 60 and re.search(r"[\d\\]", answer) else None


def _last_statement(text: str, loose: bool) -> tuple[int, str] | None:
    """(start, answer) of the last "answer is ..." statement that states an answer (not one inside a check)."""
    for statement in reversed(list(_STATEMENT.finditer(text))):
        sentence_start = max((m.end() for m in _SENTENCE_END.finditer(text, 0, statement.start())), default=0)
        if _CHECKING.search(text, sentence_start, statement.start()):
            continue
        answer = _stated_answer(_SENTENCE_END.split(text[statement.end():], maxsplit=1)[0], loose)
        if answer:
            return statement.start(), answer
    return None


def extract_lenient(text: str) -> str | None:
    """For outputs written for another harness or none (`--extraction lenient`, the default for
    --completions), in this order of preference:

    1. the later of the last box and the last stated final answer ("The final answer is 7", "**Answer:** 12"),
       so a box followed by a corrected statement gives the statement; boxes in a row that are parts of one
       answer ("\\boxed{1}, \\boxed{-2}") are joined as "1, -2";
    2. the last math span ($...$, \\(...\\), \\[...\\]);
    3. the last number.
    """
    found = answer_region(text)
    if found is None:
        return None
    region, tagged = found
    box = _last_box_group(region)
    # a statement after the last box wins only when it opens with an answer; with no box, looser ones count
    candidates = [c for c in (box, _last_statement(region, loose=box is None)) if c is not None]
    if candidates:
        return max(candidates)[1]
    if tagged and region.strip():
        return _strip_wrappers(region)
    spans = list(_MATH_SPANS.finditer(region))
    if spans:
        span = next(g for g in spans[-1].groups() if g is not None).strip()
        if span:
            return span
    numbers = _NUMBER.findall(region)
    return _clean_number(numbers[-1]) if numbers else None


# ---------------------------------------------------------------------------------------------- IneqMath
# IneqMath relation problems offer the same six options everywhere (checked on dev and the train sample):
# (A) \leq (B) \geq (C) = (D) < (E) > (F) None of the above.
RELATION_OPTIONS = {"A": r"\leq", "B": r"\geq", "C": "=", "D": "<", "E": ">", "F": "None of the above"}

# Longest spellings first so that "\leq" is not read as "<" or "\le" + "q".
_SYMBOL_SPELLINGS = [
    (r"\leqslant", r"\leq"), (r"\geqslant", r"\geq"), (r"\leq", r"\leq"), (r"\geq", r"\geq"),
    (r"\le", r"\leq"), (r"\ge", r"\geq"), ("<=", r"\leq"), (">=", r"\geq"),
    ("≤", r"\leq"), ("≥", r"\geq"), ("⩽", r"\leq"), ("⩾", r"\geq"), (r"\lt", "<"), (r"\gt", ">"),
    ("&lt;", "<"), ("&gt;", ">"), ("<", "<"), (">", ">"), ("=", "="),
]
_SYMBOL_RE = re.compile("|".join(re.escape(s) + (r"(?![a-zA-Z])" if s[-1].isalpha() else "")
                                 for s, _ in _SYMBOL_SPELLINGS))
_CANONICAL_SYMBOL = dict(_SYMBOL_SPELLINGS)
_NONE_OF_THE_ABOVE = re.compile(r"none\s+of\s+the\s+above", re.IGNORECASE)
_OPTION_LETTER = re.compile(r"\(\s*([A-F])\s*\)")
_BARE_LETTER = re.compile(r"^\s*(?:\\text\{\s*)?\(?\s*([A-F])\s*\)?\s*\}?\s*(?:[\s$:.]|$)")
_ANSWER_IS = re.compile(r"answer\s*(?:is\s*:?|:)", re.IGNORECASE)


def normalize_relation(answer: str) -> str | None:
    """An option letter A-F if the answer names one, else a canonical relation symbol, else None.

    "(D) $<$" -> "D"; "\\le" and "<=" -> "\\leq"; "none of the above" -> "None of the above".
    A letter wins over a symbol because the symbol after a letter may be a slip, the letter is the choice.
    """
    letter = _BARE_LETTER.match(answer) or _OPTION_LETTER.search(answer)
    if letter:
        return letter.group(1)
    if _NONE_OF_THE_ABOVE.search(answer):
        return RELATION_OPTIONS["F"]
    symbols = _SYMBOL_RE.findall(answer)
    return _CANONICAL_SYMBOL[symbols[0]] if symbols else None


@EXTRACTORS.register("relation")
def extract_relation(text: str) -> str | None:
    """IneqMath relation choice: from the last \\boxed{}, else from the last "answer is ..." statement.

    Without either anchor we give up rather than guess from symbols scattered through the proof, which
    would reward a model for writing inequalities, not for choosing.
    """
    found = answer_region(text)
    if found is None:
        return None
    region, tagged = found
    boxed = last_boxed(region)
    if boxed is not None:
        return normalize_relation(boxed)
    statements = list(_ANSWER_IS.finditer(region))
    if statements:
        tail = region[statements[-1].end():]
        tail = re.split(r"(?<![\d\\])\.(?:\s|$)|\n\s*\n", tail, maxsplit=1)[0]  # up to the sentence end
        return normalize_relation(tail)
    return normalize_relation(region) if tagged else None


_BOUND_STATEMENT = re.compile(r"C\s*=\s*([^$]+?)\s*\$")


@EXTRACTORS.register("bound")
def extract_bound(text: str) -> str | None:
    """IneqMath bound constant: the last \\boxed{}, else the last "$C = <expr>$" (IneqMath's own format).

    The official IneqMath prompt asks for "The answer is $C = X$", so models and the reference solutions
    use that form; a boxed answer, as our templates ask for, takes precedence.
    """
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    found = answer_region(text)
    if found is None:
        return None
    statements = _BOUND_STATEMENT.findall(found[0])
    return statements[-1].strip() if statements else None


# ------------------------------------------------------------------------------------------------ GSM8K
# A thousands-grouped number (1,080) or a plain one; a minus sign only when it is not a subtraction.
_NUMBER = re.compile(r"(?:(?<![\w)\]}])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?:(?<![\w)\]}])-)?\.\d+")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")


def _clean_number(number: str) -> str:
    number = number.replace(",", "").replace(" ", "")
    if number.startswith("-."):
        return "-0" + number[1:]
    return "0" + number if number.startswith(".") else number


@EXTRACTORS.register("last_number")
def extract_last_number(text: str) -> str | None:
    """GSM8K: the number in the last \\boxed{} if there is one, else the last number in the text.

    Thousands separators, "$" signs, units and a trailing full stop are dropped ("\\$1,080." -> "1080").
    A boxed answer that is not a plain number (a fraction, say) is returned as written, so the "number"
    grader can hand it to math-verify instead of misreading "\\frac{3}{4}" as 4.
    """
    found = answer_region(text)
    if found is None:
        return None
    region = found[0]
    boxed = last_boxed(region)
    if boxed is not None:
        content = _TEXT_WRAPPER.sub(r"\1", boxed).replace("\\$", "").replace("$", "").replace("{,}", ",")
        content = content.replace("\\%", "").replace("%", "").replace("\\!", "").replace("\\,", "").strip()
        if "\\" in content:
            return boxed.strip() or None
        numbers = _NUMBER.findall(content)
        return _clean_number(numbers[-1]) if numbers else (boxed.strip() or None)
    numbers = _NUMBER.findall(region)
    return _clean_number(numbers[-1]) if numbers else None
