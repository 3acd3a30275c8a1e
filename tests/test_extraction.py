"""Answer extraction on hand-written completions: what a model writes, what the grader gets."""

import pytest

from harness.extraction import EXTRACTORS, extract, last_boxed, normalize_relation


@pytest.mark.parametrize("text, expected", [
    ("so the answer is \\boxed{42}.", "42"),
    ("first \\boxed{1}, then corrected: \\boxed{2}", "2"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("nested \\boxed{\\{1, \\{2\\}\\}} and \\boxed{x^{2^{3}}}", "x^{2^{3}}"),
    ("\\boxed{\\text{(E)}}", "\\text{(E)}"),
    ("\\fbox{7}", "7"),
    ("\\boxed {  5 }", "5"),
    ("no box here: 42", None),
    ("empty \\boxed{}", None),
    ("", None),
])
def test_boxed_takes_the_last_balanced_box(text, expected):
    assert extract(text, "boxed") == expected


def test_a_truncated_last_box_is_no_answer():
    """The earlier box was a draft the model went past; a cut-off final box must not fall back to it."""
    assert extract("\\boxed{3} ... so finally \\boxed{\\frac{1}{", "boxed") is None
    assert last_boxed("\\boxed{\\frac{1}{") is None


@pytest.mark.parametrize("stop", ["<|im_end|>", "</s>", "<|endoftext|>"])
def test_text_after_a_stop_string_is_ignored(stop):
    text = f"answer \\boxed{{1}}{stop}<|im_start|>user\nnext question \\boxed{{2}}"
    assert extract(text, "boxed") == "1"


def test_r1_style_think_and_answer_blocks():
    draft = "<think>maybe \\boxed{3}? no</think>"
    assert extract(draft + " <answer>The result is \\boxed{4}</answer>", "boxed") == "4"
    assert extract(draft + " <answer> 4 </answer>", "boxed") == "4"  # bare answer inside the tags
    assert extract(draft + " so \\boxed{5}", "boxed") == "5"  # box after </think>, no answer tags
    assert extract(draft + " nothing after", "boxed") is None  # the box inside <think> is only a draft
    assert extract("<think>still thinking \\boxed{3} and then the budget ran out", "boxed") is None
    assert extract("prompt supplied <think>; here is the end</think> \\boxed{6}", "boxed") == "6"
    assert extract("<answer>\\boxed{7}", "boxed") == "7"  # </answer> used as a stop string
    # An <answer> tag written inside the thinking does not make the text after </think> an answer.
    assert extract("<think>I will write <answer> tags</think> some closing words", "boxed") is None


@pytest.mark.parametrize("text, expected", [
    ("Therefore, the answer is \\boxed{(D)}.", "D"),
    ("\\boxed{D}", "D"),
    ("\\boxed{\\text{(B)}}", "B"),
    ("\\boxed{(D) $<$}", "D"),
    ("\\boxed{\\leq}", "\\leq"),
    ("\\boxed{\\le}", "\\leq"),
    ("\\boxed{\\geqslant}", "\\geq"),
    ("\\boxed{<=}", "\\leq"),
    ("\\boxed{≥}", "\\geq"),
    ("\\boxed{>}", ">"),
    ("\\boxed{=}", "="),
    ("\\boxed{\\text{None of the above}}", "None of the above"),
    ("... So, the answer is (B) $\\geq$.", "B"),
    ("Thus the answer is $<$.", "<"),
    ("The final answer is: (F) None of the above", "F"),
    ("We have a \\leq b and c > d, but no conclusion.", None),  # symbols in the proof are not a choice
    ("<think>it is (A)</think>", None),
])
def test_relation_choice(text, expected):
    assert extract(text, "relation") == expected


def test_relation_normalisation_prefers_the_letter():
    assert normalize_relation("(D) $<$") == "D"
    assert normalize_relation("\\lt") == "<"
    assert normalize_relation("Answer") is None  # the "A" of a word is not option A


@pytest.mark.parametrize("text, expected", [
    ("She earns 16 - 3 - 4 = 9 dollars.\n#### 18", "18"),
    ("The total is $1,080.", "1080"),
    ("so the answer is 42.", "42"),
    ("It drops to -5 degrees", "-5"),
    ("10-3=7", "7"),
    ("costs \\$0.50 each", "0.50"),
    ("\\boxed{1,234} and later 7 steps", "1234"),
    ("\\boxed{\\$18.00}", "18.00"),
    ("\\boxed{18 \\text{ eggs}}", "18"),
    ("\\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),  # not a plain number: left for the math grader
    ("no digits at all", None),
    ("<think>42", None),
])
def test_last_number(text, expected):
    assert extract(text, "last_number") == expected


def test_bound_accepts_box_or_ineqmath_statement():
    assert extract("Therefore, the answer is $C = \\frac{1}{2}$.", "bound") == "\\frac{1}{2}"
    assert extract("so $C = 3$ works, and \\boxed{C = 4}", "bound") == "C = 4"
    assert extract("no constant stated", "bound") is None


def test_registry_lists_the_formats():
    assert {"boxed", "relation", "last_number", "bound"} <= set(EXTRACTORS.names())
    assert extract(None, "boxed") is None


# ------------------------------------------------------------------------------------------ lenient
@pytest.mark.parametrize(("text", "expected"), [
    # stated final answers, in the forms other harnesses and models write them
    ("The answer is 5", "5"),
    ("**Final answer:** 12", "12"),
    ("Final Answer: The final answer is $2.5$. I hope it is correct.", "2.5"),
    ("Reasoning...\nAnswer: $\\frac{3}{4}$", "\\frac{3}{4}"),
    ("<think>draft 9</think> The final answer is \\(\\frac{1}{2}\\)", "\\frac{1}{2}"),
    ("The answer is (D).", "(D)"),
    # a box, then a corrected statement: the last stated answer wins; a statement of nothing does not
    ("First \\boxed{3} is intermediate; so the final answer is 7.", "7"),
    ("Thus the answer is \\boxed{5}. I checked: the answer is correct.", "5"),
    ("So $x = \\boxed{4}$. Check our answer: $4 \\cdot 2 = 8$, as required.", "4"),
    # several boxes in a row are one answer; boxes joined by "or" are one answer written twice
    ("The roots are \\boxed{1}, \\boxed{-2}", "1, -2"),
    ("so $\\boxed{1}$ and $\\boxed{-2}$.", "1, -2"),
    ("which is \\boxed{15\\frac{39}{40}}, or \\boxed{\\frac{639}{40}}", "\\frac{639}{40}"),
    ("\\boxed{3} was a guess. Later: \\boxed{6}", "6"),
    # a statement ends at a full stop before a space, and gives the answer it opens with, not its prose
    ("The final answer is 3. I hope it is correct.", "3"),
    ("The answer is 18. Janet sells the rest.", "18"),
    ("The answer is 72 clips.", "72"),
    ("The answer is 1,080 dollars.", "1080"),
    ("The answer is 3.5.", "3.5"),
    ("The final answer is $\\dfrac34$, which is correct", "\\dfrac34"),
    # a statement inside a check, or one that opens with prose, does not override a box
    ("So \\boxed{5}. Let's double-check the final answer: $5\\cdot2=10$ as required.", "5"),
    ("We get \\boxed{5}. Note the answer is independent of $r$.", "5"),
    ("We get \\boxed{3}. Our answer is consistent with part (a), where we found 3", "3"),
    # no statement, no box: the last math span, then the last number
    ("We solve and get $x = 3$", "x = 3"),
    ("We get 3 apples and 4 pears, total 7 fruits", "7"),
    ("no numbers here", None),
    ("<think>never closed", None),
])
def test_lenient_extraction_reads_answers_written_for_other_harnesses(text, expected):
    assert extract(text, "boxed", "lenient") == expected


def test_strict_extraction_is_unchanged_by_the_lenient_mode():
    assert extract("The answer is 5", "boxed") is None
    assert extract("The roots are \\boxed{1}, \\boxed{-2}", "boxed") == "-2"
    assert extract("The answer is (D)", "relation", "lenient") == extract("The answer is (D)", "relation")


@pytest.mark.parametrize(("gold", "text"), [
    ("1, -2", "The roots are \\boxed{1}, \\boxed{-2}"),
    ("12", "**Final answer:** 12"),
    ("\\frac{3}{4}", "Answer: $0.75$"),
])
def test_lenient_answers_grade_right(gold, text):
    from harness.grading import grade

    assert grade("math", (gold,), extract(text, "boxed", "lenient"))
