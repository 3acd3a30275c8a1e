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


def extract(text: str, answer_format: str) -> str | None:
    """The answer in `text` under the named format ("boxed", "relation", "last_number", ...), or None."""
    if text is None:
        return None
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
