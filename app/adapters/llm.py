"""The optional LLM through the OpenAI SDK: the only module that imports ``openai`` (lazily).

Any OpenAI-compatible server works (OPENAI_BASE_URL: vLLM, Ollama, a gateway). Answers are structured
outputs bound to app.advice's pydantic schemas (``chat.completions.parse``); every failure becomes an
AdvisorError with a code, so the pipeline falls back to its deterministic result and never crashes.

Each call's timeout is bounded by the job's budget (app.deadlines), and once the model failed as often as one
job allows (timeouts, refusals, 5xx), the job's later calls fail at once with "llm: skipped ..." instead of
waiting again: the model is optional, so a spent budget degrades the result, it never requeues the job.
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app import deadlines, dependencies
from app.advice import AdvisorError, Answer, Explanation, Prompt, Proposal, Usage

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

MAX_OUTPUT_TOKENS = 800
CONNECT_SECONDS = 5.0
LLM = dependencies.LLM


class OpenAIAdvisor:
    """Advisor over the OpenAI chat completions API with structured outputs."""

    def __init__(self, api_key: str, *, base_url: str | None = None, model: str, timeout: float = 20.0,
                 max_retries: int = 1) -> None:
        import openai  # lazy: `autofix --help` and the webhook's start don't pay for it

        self._openai = openai
        self._model = model
        self._timeout = timeout
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=max_retries,
                                     timeout=openai.Timeout(timeout, connect=min(CONNECT_SECONDS, timeout)))

    @property
    def model(self) -> str:
        return self._model

    def explain(self, prompt: Prompt) -> Answer[str]:
        parsed, usage = self._ask(prompt, Explanation)
        return Answer(value=parsed.narrative, usage=usage)

    def propose(self, prompt: Prompt) -> Answer[Proposal]:
        """A proposal; empty ``changes`` when the model finds no manifest change that would fix it."""
        parsed, usage = self._ask(prompt, Proposal)
        return Answer(value=parsed, usage=usage)

    def check(self) -> str:
        """Whether the server answers with this key, and whether it lists the configured model."""
        try:
            ids = [m.id for m in self._client.models.list()]
        except self._openai.NotFoundError:  # some compatible servers have no /models: reachable is enough
            return f"reachable; the server does not list models (model {self._model})"
        except self._openai.OpenAIError as err:
            raise AdvisorError(f"unreachable: {_describe(err)}", code="llm_unreachable", dependency=LLM,
                               kind=_kind(err)) from err
        if self._model not in ids:
            raise AdvisorError(f"reachable but model {self._model} is not served "
                               f"(served: {', '.join(ids[:10]) or 'none'})", code="llm_unreachable")
        return f"reachable; model {self._model} is served"

    def _ask(self, prompt: Prompt, schema: type[M]) -> tuple[M, Usage]:
        openai = self._openai
        start = time.perf_counter()
        if not deadlines.retry_allowed(LLM):  # optional: a spent budget skips the model, the rules decide
            raise AdvisorError(f"skipped: the model failed too often in this job ({prompt.purpose})",
                               code="llm_timeout", dependency=LLM, kind=dependencies.BUDGET,
                               usage=Usage(model=self._model, tokens_in=0, tokens_out=0, seconds=0.0))
        timeout = deadlines.timeout(self._timeout)
        try:
            with deadlines.calling(LLM, f"POST /chat/completions ({prompt.purpose})"):
                completion = self._client.chat.completions.parse(
                    model=self._model, response_format=schema, temperature=0,
                    max_completion_tokens=MAX_OUTPUT_TOKENS, timeout=timeout,
                    messages=[{"role": "system", "content": prompt.system},
                              {"role": "user", "content": prompt.user}])
        except openai.APITimeoutError as err:
            raise self._failed(f"timed out after {deadlines.shown(timeout)} s", "llm_timeout", start, None,
                               kind=dependencies.TIMEOUT) from err
        except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as err:
            raise self._failed(f"output cut off ({type(err).__name__})", "llm_invalid_output", start,
                               getattr(err, "completion", None), kind=dependencies.INVALID_RESPONSE) from err
        except ValidationError as err:  # content that is not JSON, or not the schema
            raise self._failed(f"invalid structured output ({err.error_count()} error(s))", "llm_invalid_output",
                               start, None, kind=dependencies.INVALID_RESPONSE) from err
        except openai.OpenAIError as err:
            raise self._failed(_describe(err), "llm_api_error", start, None, kind=_kind(err)) from err
        deadlines.answered(LLM)
        usage = self._usage(completion, start)
        message = completion.choices[0].message if completion.choices else None
        if message is None or message.refusal:
            raise AdvisorError("the model refused to answer", code="llm_refused", usage=usage)
        if message.parsed is None:
            raise AdvisorError("the model returned no structured output", code="llm_invalid_output", usage=usage)
        log.info("llm answered", extra={"purpose": prompt.purpose, "model": usage.model,
                                        "tokens_in": usage.tokens_in, "tokens_out": usage.tokens_out})
        return message.parsed, usage

    def _failed(self, message: str, code: str, start: float, completion: Any, *, kind: str) -> AdvisorError:
        usage = self._usage(completion, start) if completion is not None else Usage(
            model=self._model, tokens_in=0, tokens_out=0, seconds=round(time.perf_counter() - start, 3))
        log.warning("llm call failed", extra={"code": code, "model": self._model, "kind": kind})
        error = AdvisorError(message, code=code, usage=usage, dependency=LLM, kind=kind)
        deadlines.failed(error)
        return error

    def _usage(self, completion: Any, start: float) -> Usage:
        usage = getattr(completion, "usage", None)
        return Usage(model=str(getattr(completion, "model", "") or self._model),
                     tokens_in=int(getattr(usage, "prompt_tokens", 0) or 0),
                     tokens_out=int(getattr(usage, "completion_tokens", 0) or 0),
                     seconds=round(time.perf_counter() - start, 3))


def _kind(err: Exception) -> str:
    status = getattr(err, "status_code", None)
    return dependencies.http_kind(int(status)) if status else dependencies.kind_of(err)


def _describe(err: Exception) -> str:
    """A short reason without echoing response bodies (they may quote the prompt)."""
    status = getattr(err, "status_code", None)
    return f"API error {status}" if status else f"API error ({type(err).__name__})"
