"""Which words over the agent are a backchannel, and the STT prompt for them."""

from __future__ import annotations

import pytest

from callgate.pipeline.backchannel import PROMPTS, Backchannels


@pytest.mark.parametrize(
    "text",
    ["Uh-huh.", "uh huh", "Mm-hmm!", "mhm", "Yeah, yeah, okay.", "Right.", "I see.", "Uh...", "Um.", "M.",
     "Uh-", "Mm-", "Oh, okay."],
)  # fmt: skip
def test_backchannels_and_hesitations_alone_are_backchannels(text: str) -> None:
    assert Backchannels.for_language("en").matches(text)


@pytest.mark.parametrize(
    "text",
    ["Uh-uh.", "uh uh", "Uh-oh.", "Up.", "Out.", "No.", "Stop.", "Wait.", "Hey.", "Uh, wait.",
     "Yeah, but no.", "Okay, I need to change the time.", "", "..."],
)  # fmt: skip
def test_words_that_say_something_are_not(text: str) -> None:
    """ "Uh-uh" is a no and "uh-oh" a problem, though each is made of a hesitation."""
    assert not Backchannels.for_language("en").matches(text)


@pytest.mark.parametrize(
    ("language", "prompt"),
    [("en-US", PROMPTS["en"]), ("de", PROMPTS["de"]), ("fr-CA", PROMPTS["fr"]), ("es", PROMPTS["es"])],
)
def test_each_language_with_a_list_has_its_prompt(language: str, prompt: str) -> None:
    backchannels = Backchannels.for_language(language)
    assert backchannels.prompt == prompt
    first = prompt.split(".")[0]
    assert backchannels.matches(first)  # the prompt is made of the language's own backchannels


def test_another_language_gets_the_english_words_but_no_english_prompt() -> None:
    backchannels = Backchannels.for_language("ja")
    assert backchannels.matches("Uh-huh.") and backchannels.prompt == ""


def test_an_agents_own_list_makes_its_prompt_from_its_first_phrases() -> None:
    backchannels = Backchannels.for_language(
        "en", ["mhm", "MHM", "sure thing", "ja", "got it!", "jo", "nope"]
    )
    assert backchannels.prompt == "Mhm. Sure thing. Ja. Got it. Jo."
    assert backchannels.matches("Uh-uh.") is False and backchannels.matches("sure thing, mhm")
    assert Backchannels.for_language("en", []).prompt == ""
