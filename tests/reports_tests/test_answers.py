"""The report opens with its answers: four short paragraphs with numbers, before the protocol and the method (fast)."""

import numpy as np
from reports_tests.simulate import relu_ahead, simulate, tanh_flips

from reports import answers, build
from reports.blocks import Text


def _answers(effect, seed=0):
    result = build.analyse(simulate(np.random.default_rng(seed), effect), full=False)
    return answers.section(result.comparisons, result.margin), result


def test_the_section_is_titled_answers_and_asks_the_four_questions():
    section, _ = _answers(relu_ahead)
    assert section.title == "Answers"  # the exact heading the dashboard's study note copies
    texts = [b.text for b in section.blocks if isinstance(b, Text)]
    assert len(texts) == 4 and all(t.startswith(f"**{q}**") for t, q in zip(texts, answers.QUESTIONS.values(), strict=True))


def test_each_answer_is_at_most_120_words_and_names_its_claims_by_size():
    section, result = _answers(relu_ahead)
    for block in section.blocks:
        assert len(block.text.split()) <= answers.MOST_WORDS + 8  # + the question itself
    activation = section.blocks[0].text
    # relu is 3 points ahead at every learning rate: a pooled claim, named first, with its interval.
    assert "relu ahead of" in activation and "points [" in activation


def test_a_sign_flip_is_answered_as_it_depends():
    section, _ = _answers(tanh_flips, seed=3)
    assert "depends on the learning rate" in section.blocks[0].text


def test_limit_drops_whole_sentences_from_the_end():
    text = " ".join(f"Sentence {i} has five words." for i in range(40))
    short = answers._limit(text)
    assert len(short.split()) <= answers.MOST_WORDS and short.endswith(".") and short.startswith("Sentence 0")
