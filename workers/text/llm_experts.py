"""Text tasks that HuggingGPT hands to its controller LLM, run as real tasks on the text pool
through the same LLM client (usage accounted to the run under stage "task")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared.errors import ExpertError, LLMError, TransientExpertError
from shared.outputs import ExpertResult
from shared.settings import get_settings
from workers.expert import Expert, InputValue, register
from workers.node_runner import current_run


class _LLMExpert(Expert):
    backend = "llm"
    instruction: ClassVar[str]

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if get_settings().openai_base_url else "no LLM endpoint configured (OPENAI_BASE_URL)"

    def _llm(self):  # type: ignore[no-untyped-def]
        from shared.llm_client import LLM

        run = current_run.get()
        return LLM(get_settings(), on_usage=run.add_usage if run is not None else None)

    def prompt(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> str:
        text = inputs.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ExpertError(f"{self.task} needs a non-empty text")
        return f"{self.instruction.format(**dict(params.items()))}\n\n{text}"

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        messages = [{"role": "system", "content": "You are a precise assistant. Answer with the result only."},
                    {"role": "user", "content": self.prompt(inputs, {"target": "English", **params})}]
        try:
            answer = self._llm().chat("task", messages, max_tokens=512)
        except LLMError as exc:
            raise TransientExpertError(str(exc)) from exc
        return ExpertResult(text=answer.strip())


@register
class LLMSummarizer(_LLMExpert):
    model_id = "llm/summarization"
    task = "summarization"
    pool = "text"
    description = "the controller LLM summarises (abstractive, fluent)"
    instruction = "Summarise the following text in two or three sentences:"


@register
class LLMTranslator(_LLMExpert):
    model_id = "llm/translation"
    task = "translation"
    pool = "text"
    description = "the controller LLM translates"
    instruction = "Translate the following text into {target}. Output only the translation:"


@register
class LLMConversational(_LLMExpert):
    model_id = "llm/conversational"
    task = "conversational"
    pool = "text"
    description = "the controller LLM replies"
    instruction = "Reply to this message:"


@register
class LLMTextGeneration(_LLMExpert):
    model_id = "llm/text-generation"
    task = "text-generation"
    pool = "text"
    description = "the controller LLM writes text from a prompt"
    instruction = "Write the text this prompt asks for:"


@register
class LLMText2Text(_LLMExpert):
    model_id = "llm/text2text-generation"
    task = "text2text-generation"
    pool = "text"
    description = "the controller LLM rewrites text following an instruction"
    instruction = "Follow the instruction in this text:"

    def prompt(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> str:
        given = str(params.get("instruction") or "").strip()
        if not given:
            return super().prompt(inputs, params)
        return super().prompt(inputs, {}).replace(self.instruction, f"{given.rstrip(':.')}. Output only the result:", 1)


@register
class LLMQuestionAnswering(_LLMExpert):
    model_id = "llm/question-answering"
    task = "question-answering"
    pool = "text"
    description = "the controller LLM answers from the given context"
    instruction = ""

    def prompt(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> str:
        context, question = inputs.get("text"), inputs.get("question")
        if not isinstance(context, str) or not isinstance(question, str):
            raise ExpertError("question-answering needs a context text and a question")
        return f"Answer the question using only this context.\nContext: {context}\nQuestion: {question}"
