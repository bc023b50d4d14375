"""The prompt tasks over a scripted engine: what each step asks, what it keeps, what it drops."""

import asyncio
import json
import re

import pytest

from engines.scripted import ScriptedChatEngine
from tasks.prompts.config import PromptsStage
from tasks.prompts.instruction_following import generate_instruction_prompts
from tasks.instructions import check_strict
from tasks.prompts.questions import document_items, generate_questions, question_items, revise_questions, split_math_answer
from tasks.prompts.topics import generate_topics, leaf_topics, topic_row
from tasks.prompts.two_turn import generate_two_turn
from tasks.templates import TemplateError, parse_template


def run(coro):
    return asyncio.run(coro)


def numbered(*items):
    return "Sure! Here you go:\n" + "\n".join(f"{i}. {t}" for i, t in enumerate(items, 1)) + "\nHope this helps!"


def test_topic_tree_merges_user_topics_and_drops_near_duplicates():
    def script(req):
        text = req.messages[0]["content"]
        if "wide-ranging subject areas" in text:
            return numbered("Astronomy", "Personal finance", "Cooking")
        topic = re.search(r'"(.+?)"', text).group(1)
        return numbered(f"{topic} basics", f"{topic} history", f"{topic} basic")  # last is a near-duplicate

    stage = PromptsStage(topics={"macro_topics": 3, "subtopics_per_topic": 3, "user_topics": ["personal finances"]})
    out = run(generate_topics(ScriptedChatEngine(script), stage, seed=1))
    macros = [r["topic"] for r in out.rows if r["subtopic"] is None]
    assert macros == ["personal finances", "Astronomy", "Cooking"]  # user topic first, generated near-dup dropped
    assert {d.reason for d in out.drops} == {"near_duplicate_topic"}
    subs = [r for r in out.rows if r["subtopic"]]
    assert len(subs) == 3 * 2 and all(r["source"] == "llm" for r in subs)
    assert len(leaf_topics(out.rows)) == 6
    assert all(r["template_id"] == "prompts.topics_sub" for r in subs)


def test_unparseable_topic_answer_is_a_drop_and_an_empty_tree_is_an_error():
    engine = ScriptedChatEngine(lambda req: "I'm sorry, I can't help with that.")
    stage = PromptsStage(topics={"macro_topics": 3, "subtopics_per_topic": 0})
    with pytest.raises(ValueError, match="topic tree is empty"):
        run(generate_topics(engine, stage, seed=0))
    stage = PromptsStage(topics={"macro_topics": 3, "subtopics_per_topic": 2, "user_topics": ["chess"]})
    out = run(generate_topics(engine, stage, seed=0))
    assert [r["topic"] for r in out.rows] == ["chess"]
    assert sorted(d.reason for d in out.drops) == ["refusal", "refusal"]
    assert all(d.raw.startswith("I'm sorry") for d in out.drops)


def test_questions_per_task_type_carry_topic_and_template():
    stage = PromptsStage()
    topics = [topic_row("Cooking", "bread", "llm")]
    engine = ScriptedChatEngine(lambda req: numbered("How does yeast work?", "Why knead dough?"))
    for task_type in ("open_qa", "writing", "math", "coding"):
        items = question_items(task_type, topics, stage)
        out = run(generate_questions(engine, task_type, items, stage, seed=3))
        assert out.rows and not out.drops
        assert {r["task_type"] for r in out.rows} == {task_type}
        assert all(r["topic"] == "Cooking" and r["subtopic"] == "bread" for r in out.rows)
        assert all(r["messages"][0]["role"] == "user" for r in out.rows)
    assert len(question_items("writing", topics, stage)) == len(stage.writing.text_types)
    assert len(question_items("math", topics, stage)) == 3  # one request per level


@pytest.mark.parametrize(
    ("line", "question", "answer"),
    [
        ("A baker has 3 trays of 12 rolls. How many rolls? Answer: 36", "A baker has 3 trays of 12 rolls. How many rolls?", "36"),
        ("Solve x + 2 = 5. (Answer: x = 3)", "Solve x + 2 = 5.", "x = 3"),
        ("What is the derivative of x^2?", "What is the derivative of x^2?", None),
    ],
)
def test_math_reference_answers_are_split_off(line, question, answer):
    assert split_math_answer(line) == (question, answer)


def test_closed_qa_prompt_contains_its_document():
    docs = [{"doc_id": "d1", "text": "The lighthouse was built in 1887 on the northern cape."}]
    engine = ScriptedChatEngine(lambda req: numbered("When was the lighthouse built?", "Summarize the text."))
    out = run(generate_questions(engine, "closed_qa", document_items(docs, 2), PromptsStage(), seed=0))
    assert len(out.rows) == 2
    for row in out.rows:
        assert row["context"] == docs[0]["text"]
        assert row["messages"][0]["content"].startswith(docs[0]["text"])


def test_revision_replaces_the_question_and_drops_empty_rewrites():
    stage = PromptsStage()
    engine = ScriptedChatEngine(lambda req: numbered("What is a black hole?", "Why is the sky dark at night?"))
    questions = run(generate_questions(engine, "open_qa", question_items("open_qa", [topic_row("Space", None, "config")], stage), stage, 0))
    answers = iter(['Revised question: "How do black holes form, and can anything escape one?"', ""])
    revised = run(revise_questions(ScriptedChatEngine(lambda req: next(answers)), "open_qa", questions.rows, stage, 0))
    assert [r["messages"][0]["content"] for r in revised.rows] == ["How do black holes form, and can anything escape one?"]
    assert revised.rows[0]["template_id"] == "prompts.open_qa_revise"
    assert [d.reason for d in revised.drops] == ["revision_empty_answer"]


def test_instruction_prompts_in_three_forms_store_verifiable_ids():
    base = [{"id": f"q{i}", "task_type": "open_qa", "topic": "t", "subtopic": None, "source": "synthetic",
             "messages": [{"role": "user", "content": f"Explain topic number {i}."}]} for i in range(6)]
    stage = PromptsStage(instruction_following={"count": 6, "max_per_prompt": 2})
    engine = ScriptedChatEngine(lambda req: "Here is a first answer.")
    out = run(generate_instruction_prompts(engine, base, stage, seed=7))
    assert len(out.rows) == 6 and not out.drops
    assert sorted({r["turn_form"] for r in out.rows}) == ["multi_turn", "second_turn", "single_turn"]
    for row in out.rows:
        kwargs = json.loads(row["instruction_kwargs"])
        assert len(kwargs) == len(row["instruction_ids"]) >= 1
        check_strict(row["instruction_ids"][0], "some response", kwargs[0])  # kwargs fit their checker
        if row["turn_form"] == "second_turn":
            assert [m["role"] for m in row["messages"]] == ["user", "assistant", "user"]
            assert row["messages"][1]["content"] == "Here is a first answer."
        else:
            assert [m["role"] for m in row["messages"]] == ["user"]
    # reproducible: the same seed plans the same instructions
    again = run(generate_instruction_prompts(engine, base, stage, seed=7))
    assert [r["instruction_kwargs"] for r in again.rows] == [r["instruction_kwargs"] for r in out.rows]


def test_two_turn_prompts_are_user_assistant_user():
    seeds = [{"id": "s1", "task_type": "seed", "source": "seed", "topic": None, "subtopic": None,
              "messages": [{"role": "user", "content": "How do I boil an egg?"}]}]

    def script(req):
        if "Write the user's next message" in req.messages[0]["content"]:
            return "Can you make it a soft-boiled egg instead?"
        return "Put it in boiling water for nine minutes."

    out = run(generate_two_turn(ScriptedChatEngine(script), seeds, PromptsStage(), seed=0))
    (row,) = out.rows
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "user"]
    assert row["messages"][2]["content"] == "Can you make it a soft-boiled egg instead?"
    assert row["task_type"] == "two_turn" and row["template_id"] == "prompts.two_turn_followup"


def test_template_with_a_missing_variable_names_file_and_variable(tmp_path):
    tpl = parse_template("id: x\nversion: 1\n---\nWrite {count} things about {topic}.", tmp_path / "x.txt")
    with pytest.raises(TemplateError, match=r"x.txt .*missing variable\(s\) topic; provided: count"):
        tpl.render(count=3)
    with pytest.raises(TemplateError, match="no '---' line"):
        parse_template("just a body {x}", tmp_path / "y.txt")
