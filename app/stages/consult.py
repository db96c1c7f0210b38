"""The optional model, asked once by a stage (diagnosis: propose; explain: narrate).

Any failure is an answer too: recorded (code, usage) and answered with None, so the deterministic result
stands. What was asked and answered goes to the run record (app/stages/record.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app import advice
from app.ports import Advisor

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Consultation(Generic[T]):
    purpose: str  # "propose" or "explain"
    model: str
    prompt: str  # system and user parts, as recorded
    outcome: str  # "answered", or the AdvisorError's code
    note: str  # what every outcome's reason says about the model from now on
    usage: advice.Usage | None
    answer: T | None = None
    answer_json: str | None = None  # the answer as recorded


def ask(advisor: Advisor, prompt: advice.Prompt, call: Callable[[advice.Prompt], advice.Answer[T]], *,
        answered: Callable[[T], str]) -> Consultation[T]:
    """Ask the model; ``answered`` says what the answer made of it (the note)."""
    model = advisor.model
    recorded = f"# system\n\n{prompt.system}\n\n# user\n\n{prompt.user}\n"
    try:
        answer = call(prompt)
    except advice.AdvisorError as err:
        log.warning("llm fallback", extra={"code": err.code, "purpose": prompt.purpose})
        return Consultation(purpose=prompt.purpose, model=model, prompt=recorded, outcome=err.code,
                            note=f"model {model} consulted: {err.message}; deterministic result kept", usage=err.usage)
    value: Any = answer.value.model_dump(mode="json") if hasattr(answer.value, "model_dump") else answer.value
    return Consultation(purpose=prompt.purpose, model=model, prompt=recorded, outcome="answered",
                        note=answered(answer.value), usage=answer.usage, answer=answer.value,
                        answer_json=json.dumps(value, indent=2))
