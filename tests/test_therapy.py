"""therapy-v0: the case bank, the decoder, the dialogue protocol, scoring, golden transcript."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

import games
from games.options import OptionError
from games.therapy import EmbeddingMatcher, TermMatcher, builtin_cases, taxonomy
from games.therapy import decoder as decoding
from games.therapy.cases import Case, generate_bank
from games.therapy.game import diagnosed_category, parse_rating
from tests.helpers import scripted_game

GOLDEN = Path(__file__).parent / "golden"
POOLS = ("situations", "automatic_thoughts", "emotions", "behaviours", "intermediate_beliefs", "core_beliefs",
         "coping_strategies")


def test_case_bank_size_and_reproducibility():
    bank = builtin_cases()
    assert len(bank) >= 60 and len({c.disorder for c in bank}) >= 8
    assert [c.to_dict() for c in generate_bank()] == [c.to_dict() for c in bank], \
        "data/cases.json is out of date: run games.therapy.cases.write_bank()"
    for case in bank:
        assert case.symptoms and case.treatments and case.automatic_thoughts and case.core_beliefs


def test_taxonomy_sentences_mention_exactly_their_symptom():
    tax = taxonomy()
    names = [s["name"] for s in tax.symptoms.values()]
    for s in tax.symptoms.values():
        for sentence in s["says"]:
            assert decoding.mentions(sentence, names) == {s["name"]: True}, sentence
    for denial in tax.denials.values():
        assert not any(decoding.mentions(denial, names).values()), denial
    for category in tax.categories:
        for pool in POOLS:
            for text in category[pool]:
                assert decoding.mentions(text, names) == {}, (category["id"], text)


def test_hypothesis_parsing_and_matching():
    case = builtin_cases()[0]
    terms = decoding.parse_hypothesis("Let us see.\nSymptoms: feeling down; loss of interest, trouble sleeping; jazz")
    assert terms == ["feeling down", "loss of interest", "trouble sleeping", "jazz"]
    match = TermMatcher().compare(terms, case)
    assert "depressed mood" in match.found and "anhedonia" in match.found and "jazz" in match.extra
    assert match.precision == pytest.approx(len(match.found) / 4)
    assert match.recall == pytest.approx(len(match.found) / len(case.symptoms))
    assert decoding.parse_hypothesis("no block here") is None


def test_embedding_matcher_tolerates_spelling_and_takes_any_embedding():
    case = builtin_cases()[0]
    fuzzy = EmbeddingMatcher().compare(["depresed mood", "anhedonnia", "astronomy"], case)
    assert set(fuzzy.found) == {"depressed mood", "anhedonia"} and fuzzy.extra == ("astronomy",)
    assert TermMatcher().compare(["depresed mood"], case).found == ()
    constant = EmbeddingMatcher(embed=lambda texts: np.ones((len(texts), 4)), threshold=0.99)
    assert len(constant.compare(["anything"], case).found) == 1


def test_mentions_reads_negation():
    names = ["insomnia", "fatigue"]
    assert decoding.mentions("I have trouble sleeping. I am not tired all the time.", names) == {
        "insomnia": True, "fatigue": False}


@pytest.mark.parametrize("text,category", [
    ("Major depressive disorder", "major depressive disorder"),
    ("I think this is GAD, with some insomnia", "generalized anxiety disorder"),
    ("PTSD", "post-traumatic stress disorder"),
    ("social anxiety disorder", "social anxiety disorder"),
    ("anxiety", None),
])
def test_diagnosed_category(text, category):
    assert diagnosed_category(text) == category


def test_parse_rating():
    assert parse_rating("Rating: 7/10 because...") == 7
    assert parse_rating("rating 3. Actually Rating: 9") == 9
    assert parse_rating("Rating: 0") is None and parse_rating("I like it") is None


def _game(seed=0, **options):
    env = games.make("therapy-v0", **options)
    env.reset(seed=seed)
    return env


def _interview(env, question="How are you?\nSymptoms: feeling down", answer="I feel down almost every day."):
    """Play patient opening and exchanges until the therapist is asked for a diagnosis."""
    env.step("Hello, I have been struggling.")
    while env.phase != "diagnosis":
        env.step(question)
        env.step(answer)
    return env


def test_protocol_and_guidance_to_the_therapist():
    env = _game(exchanges=2, max_extra_exchanges=3)
    env.step("I am here because things are hard.")
    assert env.agent_selection == "therapist" and "Patient: I am here" in env.observe("therapist")["text"]
    env.step("How is your mood?\nSymptoms: feeling down")
    assert "Symptoms" not in env.observe("patient")["text"], "the hypothesis block is for the decoder only"
    for _ in range(4):  # 2 fixed exchanges, then 3 extra ones while symptoms are missing
        env.step("I feel down.")
        assert env.phase == "interview"
        env.step("And sleep?\nSymptoms: feeling down")
    env.step("It is fine.")
    assert env.answers == 5 and env.extra == 3 and env.phase == "diagnosis"
    assert "Guidance: you have not yet explored" in "\n".join(t for k, w, t in env._log if k == "tell")


def test_guidance_to_the_patient():
    env = _game(exchanges=1, guidance="patient")
    env.step("Hello.")
    env.step("Tell me more.\nSymptoms: nothing")
    env.step("Okay.")
    assert "the therapist has not yet learned that you have:" in env.observe("patient")["text"]


def test_diagnosis_and_rating_loop():
    env = _interview(_game(max_treatment_tries=3, max_extra_exchanges=0))
    env.step("I think it is depression.")
    assert not env.records[-1].legal and "Diagnosis:" in env.records[-1].reason
    env.step(f"Diagnosis: {env.case.disorder}\nPlan: long walks")
    assert env.phase == "rating" and "Proposed plan: long walks" in env.observe("patient")["text"]
    env.step("I don't know.")
    assert not env.records[-1].legal and "Rating" in env.records[-1].reason
    env.step("Rating: 4. Not for me.")
    assert "rated the plan 4/10" in env.observe("therapist")["text"]
    env.step("Diagnosis: something else entirely")
    assert not env.records[-1].legal, "a revision needs a plan"
    env.step("Plan: yoga")
    env.step("Rating: 5")
    env.step("Plan: rest")
    env.step("Rating: 6")
    assert env.done and env.result.metrics["treatment_tries"] == 3 and env.result.metrics["plan_rating"] == 6


def test_a_high_rating_ends_the_session_and_scores_follow_the_card():
    env = _interview(_game(seed=3, max_extra_exchanges=0))
    case = env.case
    env.step(f"Diagnosis: {case.disorder}\nPlan: {case.treatments[0]}\nSymptoms: {'; '.join(case.symptoms)}")
    env.step("Rating: 9")
    m = env.result.metrics
    assert env.done and m["diagnosis_correct"] == 1.0 and m["symptom_recall"] == 1.0 and m["symptom_f1"] == 1.0
    assert env.result.scores["therapist"] == pytest.approx(1.5)


def test_patient_consistency_flags_contradictions():
    env = _game(seed=0, exchanges=2, max_extra_exchanges=0)
    case = env.case
    other = next(s["name"] for s in taxonomy().symptoms.values() if s["name"] not in case.symptoms)
    claim_other = taxonomy().symptom(other)["says"][0]
    deny_own = f"I do not have {case.symptoms[0]}."
    env.step("Hello.")
    env.step("Q?\nSymptoms: x")
    env.step(claim_other)
    env.step("Q?\nSymptoms: x")
    env.step(deny_own)
    env.step("Diagnosis: x\nPlan: y")
    env.step("Rating: 10")
    assert env.result.metrics["patient_consistency"] == pytest.approx(1 / 3)


def test_case_file(tmp_path):
    cases = [
        {"disorder": "gaming disorder", "symptoms": ["loss of control over gaming", "insomnia"], "name": "Kim",
         "treatments": ["cbt"]},
        {"disorder": "major depressive disorder", "symptoms": ["depressed mood", "anhedonia"]},
    ]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in cases) + "\n")
    env = games.make("therapy-v0", case_file=str(path))
    assert "gaming disorder" in env.brief("therapist")
    diseases = set()
    for seed in range(10):
        env.reset(seed=seed)
        diseases.add(env.case.disorder)
    assert diseases == {"gaming disorder", "major depressive disorder"}
    assert diagnosed_category("Diagnosis: gaming disorder", "gaming disorder") == "gaming disorder"


@pytest.mark.parametrize("line,message", [
    ('{"symptoms": ["a"]}', "'disorder' must be a non-empty string"),
    ('{"disorder": "x", "symptoms": []}', "'symptoms' must be a non-empty list"),
    ('{"disorder": "x", "symptoms": ["a"], "mood": "?"}', "unknown fields \\['mood'\\]"),
    ("{oops", "not valid JSON"),
])
def test_bad_case_files_name_the_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(OptionError, match=f"line 1: {message}"):
        games.make("therapy-v0", case_file=str(path))


def test_scripted_players_and_baselines():
    scripted = [scripted_game("therapy-v0", s).result.metrics for s in range(30)]
    vs_random = [scripted_game("therapy-v0", s, kinds={"patient": "random"}).result.metrics for s in range(30)]
    random_therapist = [scripted_game("therapy-v0", s, kinds={"therapist": "random"}).result.metrics
                        for s in range(30)]
    agg = games.TherapyGame.aggregate_metrics
    assert agg(scripted)["diagnosis_correct"] >= 0.9 and agg(scripted)["patient_consistency"] >= 0.95
    assert agg(random_therapist)["diagnosis_correct"] < 0.4
    assert agg(vs_random)["patient_consistency"] < 0.6


def test_case_dict_round_trip():
    case = builtin_cases()[5]
    assert Case.from_dict(case.to_dict()) == case


def test_golden_transcript():
    """A full transcript of a fixed seed, byte for byte. Set ARENA_UPDATE_GOLDEN=1 to rewrite it."""
    path = GOLDEN / "therapy-v0-seed4.txt"
    transcript = scripted_game("therapy-v0", seed=4).transcript()
    if os.environ.get("ARENA_UPDATE_GOLDEN"):
        path.write_text(transcript, encoding="utf-8")
    assert transcript == path.read_text(encoding="utf-8")
