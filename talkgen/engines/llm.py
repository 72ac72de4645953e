"""The chat LLM protocol: messages in, a reply out, streamed token by token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from talkgen.engines.registry import checked

if TYPE_CHECKING:
    from talkgen.recipe import LLMConfig


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


def llm_identity(config: LLMConfig) -> dict:
    return checked("llm", config).identity(config)


def load_llm(config: LLMConfig, on_status: Callable[[str], None] | None = None, recipe: str = "cpu") -> LLMEngine:
    return checked("llm", config).load(config, on_status, recipe)
