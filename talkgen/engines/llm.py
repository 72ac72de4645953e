"""The chat LLM protocol: messages in, a reply out, streamed token by token."""

from __future__ import annotations

from typing import Callable, Protocol


class LLMEngine(Protocol):
    def identity(self) -> dict: ...

    def count_tokens(self, messages: list[dict]) -> int:
        """Prompt length in tokens once the chat template is applied."""
        ...

    def chat(
        self, messages: list[dict], seed: int, on_text: Callable[[str], None] | None = None, max_words: int | None = None
    ) -> tuple[str, int]:
        """Generate a reply (stopping soon after max_words words); return its text and its length in tokens."""
        ...


ENGINES = ("transformers",)


def _check(config) -> None:
    if config.engine not in ENGINES:
        from talkgen.errors import UsageError

        raise UsageError(f"unknown llm.engine '{config.engine}': the available engines are {', '.join(ENGINES)}")


def llm_identity(config) -> dict:
    _check(config)
    from talkgen.engines import transformers_llm

    return transformers_llm.identity(config)


def load_llm(config, on_status: Callable[[str], None] | None = None, recipe: str = "cpu") -> LLMEngine:
    _check(config)
    from talkgen.engines.transformers_llm import TransformersLLM

    return TransformersLLM(config, on_status, recipe)
