"""PRM800K step labels (``openai/prm800k``'s ``data/phase*_*.jsonl``) → ``stepwise`` and ``step_dpo`` configs.

Each record is one labelled solution of a MATH problem (``question.problem``): ``label.steps[]`` holds,
per step, the candidate ``completions`` (``text`` and a ``rating``: -1 wrong, 0 neither wrong nor
progress, +1 right), the ``chosen_completion`` the solution went on with (null when a labeller wrote
``human_completion`` instead, or at the step where labelling stopped). The solution so far is the
chosen (or human) step of each step before.

``stepwise`` (TRL's stepwise-supervision format, as trl-lib/prm800k builds it): the whole labelled
solution, plus, for every candidate step that was not chosen, the solution so far followed by that step;
``labels`` says which steps are correct. ``step_dpo``: at each step whose prefix holds no wrong step,
every candidate rated -1 is ``rejected`` against a correct candidate of the same step (the chosen one
first, then a human-written step, then the others); the prompt is the problem followed by the prefix
steps, each followed by a blank line (as ``hfpref curate`` writes step_dpo).

``neutral``: whether a step rated 0 counts as correct (a step_dpo ``chosen`` candidate, a true label)
or not (the default, as trl-lib/prm800k). Skipped and counted: problems the labeller marked bad
(``finish_reason`` ``bad_problem``) and solutions without a labelled step. Ratings go into the card.
"""

from __future__ import annotations

from pathlib import Path

from hfpref.importers.base import Importer, ImportOptions, distribution
from hfpref.importers.records import Field
from hfpref.repo.schema import step_prompt

RATINGS = (-1, 0, 1)


def read_step(step: Field) -> tuple[list[str], list[int | None], int | None, str | None]:
    """A step's candidate texts and ratings, ``chosen_completion`` (an index or None) and the labeller's
    own step (``human_completion``: a string, or an object with ``text`` as in phase 1; else None)."""
    completions = step["completions"].items(optional=True)
    texts = [c["text"].text() for c in completions]
    rates = [c["rating"].integer(choices=RATINGS, optional=True) for c in completions]
    chosen = step["chosen_completion"].integer(choices=range(len(completions)), optional=True)
    human = step["human_completion"]
    own = human.text(optional=True) if human.null or isinstance(human.value, str) else human["text"].text()
    return texts, rates, chosen, own


def import_solution(job: Importer, problem: str, steps: list[Field], correct: set[int]) -> list[int]:
    """Add the stepwise and step_dpo rows of one labelled solution; returns its step ratings."""
    ratings: list[int] = []
    prefix: list[str] = []
    labels: list[bool] = []
    prefix_ok = True  # no step of the prefix is rated -1
    for k, step in enumerate(steps):
        texts, rates, chosen, human = read_step(step)
        ratings.extend(r for r in rates if r is not None)
        others = [(t, r) for j, (t, r) in enumerate(zip(texts, rates, strict=True)) if j != chosen]
        for text, rating in others:
            if rating is not None:
                job.add("stepwise", problem, completions=[*prefix, text], labels=[*labels, rating in correct])
        if prefix_ok:
            good = [texts[chosen]] if chosen is not None and rates[chosen] in correct else []
            good += ([human] if human else []) + [t for t, r in others if r in correct]
            for text in (t for t, r in zip(texts, rates, strict=True) if r == -1):
                if not good:
                    job.drop("step_dpo", "no correct step to pair a wrong step with")
                    continue
                prompt = step_prompt(problem, prefix)
                job.add("step_dpo", prompt, group=problem, chosen=good[0], rejected=text, step_index=k)
        if chosen is not None and rates[chosen] is not None:
            prefix.append(texts[chosen])
            labels.append(rates[chosen] in correct)
            prefix_ok = prefix_ok and rates[chosen] != -1
        elif chosen is None and human:
            prefix.append(human)
            labels.append(True)
        else:
            break  # labelling stopped here (the first wrong step), or the chosen step has no rating
    if prefix:
        job.add("stepwise", problem, completions=prefix, labels=labels)
    return ratings


def build(options: ImportOptions, *, neutral: str = "wrong") -> Path:
    """Import PRM800K labelled solutions (question.problem, label.steps[].completions[].rating); ``neutral``
    (``wrong`` or ``correct``) says how a step rated 0 counts. Returns the folder."""
    job = Importer(
        options,
        name="PRM800K",
        summary="PRM800K's human step labels on MATH solutions, as stepwise supervision and Step-DPO pairs.",
        conversion=f"rating +1 correct, -1 wrong, 0 {neutral}; step_dpo rejected steps are rated -1",
        tags=("prm800k", "math", "human-feedback"),
        limitations=("Step labels are from human labellers of model-written solutions to MATH problems.",),
        facts={"source license": "mit (openai/prm800k)"},
    )
    correct = {1, 0} if neutral == "correct" else {1}
    ratings: list[float] = []
    for record in job.records():
        problem = record["question"]["problem"].text()
        label = record["label"]
        if label["finish_reason"].text(optional=True) == "bad_problem":
            job.skip("problem marked bad by the labeller (finish_reason bad_problem)")
            continue
        steps = label["steps"].items(optional=True)
        if not steps:
            job.skip("no labelled steps")
            continue
        ratings.extend(import_solution(job, problem, steps, correct))
    job.distributions["step rating"] = distribution(ratings)
    return job.write()
