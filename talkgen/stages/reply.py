"""reply: questions -> the avatar's answers (reply.json), one conversation.

A script's paragraphs are successive turns: the model sees the earlier questions and
its own answers. When a turn would not fit the context window, the oldest turns are
dropped first, and the caller is told.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from talkgen.engines.llm import LLMEngine
from talkgen.errors import TalkgenError
from talkgen.job import write_json_atomic
from talkgen.text.script import has_words

if TYPE_CHECKING:
    from talkgen.recipe import LLMConfig

# The code that makes reply.json, for the stage's cache key (talkgen.job.code_hash); the LLM's own module is added to it.
MADE_BY = (__name__,)
RETRY_SEED_OFFSET = 7919


def system_prompt(persona: str, max_words: int) -> str:
    return (
        f"You are {persona.strip().rstrip('.')}. You are speaking aloud in a video, so answer in plain spoken "
        f"sentences of at most {max_words} words in all: no lists, no markdown, no emoji, no stage directions."
    )


def bound_words(text: str, max_words: int) -> str:
    """Keep at most max_words words, ending at a sentence end when one is in reach."""
    text = re.sub(r"[*_#`>|]+", " ", text)  # markdown the voice would read out
    words = text.split()
    if len(words) <= max_words:
        return " ".join(words)
    cut = " ".join(words[:max_words])
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "), cut.rfind("."), cut.rfind("!"), cut.rfind("?"))
    if end > len(cut) // 2:
        return cut[: end + 1]
    return cut.rstrip(",;:") + "."


# When the conversation outgrows the window, older turns are left out until the prompt is
# back to this share of it, not just under it: the turns after then begin with the same
# tokens for a while, so the LLM's kept cache serves them, instead of every turn shifting
# the window by one and reading the whole conversation again.
REFILL_SHARE = 0.75


def fit_context(
    system: dict, history: list[dict], question: dict, llm: LLMEngine, budget: int, note: Callable[[str], None], dropped: int = 0,
) -> tuple[list[dict], int]:
    """The prompt for `question`, and how many of the oldest question-and-answer pairs it leaves
    out: `dropped` (the last turn's count) while that fits `budget` tokens, else enough more to
    bring it down to REFILL_SHARE of the budget."""
    dropped = min(dropped, len(history) // 2)

    def prompt(d: int) -> list[dict]:
        return [system, *history[2 * d :], question]

    if llm.count_tokens(prompt(dropped)) <= budget:
        return prompt(dropped), dropped
    before = dropped
    while 2 * dropped < len(history) and llm.count_tokens(prompt(dropped)) > budget * REFILL_SHARE:
        dropped += 1
    if llm.count_tokens(prompt(dropped)) > budget:
        # The question alone is too long: keep its beginning.
        words = question["content"].split()
        while len(words) > 1 and llm.count_tokens([system, {"role": "user", "content": " ".join(words)}]) > budget:
            words = words[: int(len(words) * 0.8)]
        note(f"the question is longer than the model's context window: kept its first {len(words)} words")
        return [system, {"role": "user", "content": " ".join(words)}], len(history) // 2
    note(f"the conversation is longer than the model's context window: left out the {dropped - before} oldest turn(s) "
         f"({dropped} in all)")
    return prompt(dropped), dropped


def answer(
    question: str,
    index: int,
    system: dict,
    history: list[dict],
    llm: LLMEngine,
    config: LLMConfig,
    on_text: Callable[[str], None] | None = None,
    note: Callable[[str], None] = lambda msg: None,
    dropped: int = 0,
) -> dict:
    """One turn: the reply to `question` given the conversation so far (history is not changed).

    The seed is llm.seed plus the turn's index, so a conversation replays the same way.
    `dropped` is the last turn's "dropped_turns": the oldest turns it left out of the prompt.
    """
    import time

    messages, dropped = fit_context(system, history, {"role": "user", "content": question}, llm,
                                    config.context_tokens - config.max_new_tokens, note, dropped)
    seed = config.seed + index
    t = time.perf_counter()
    text, tokens = llm.chat(messages, seed, on_text, config.max_reply_words)
    reply_text = bound_words(text, config.max_reply_words)
    retried = False
    if not has_words(reply_text):
        note(f"the model gave an empty reply to turn {index + 1}: trying once more with another seed")
        retried, seed = True, seed + RETRY_SEED_OFFSET
        text, tokens = llm.chat(messages, seed, on_text, config.max_reply_words)
        reply_text = bound_words(text, config.max_reply_words)
        if not has_words(reply_text):
            raise TalkgenError(f"the model gave an empty reply to turn {index + 1} twice: change llm.seed or the question")
    seconds = time.perf_counter() - t
    return {
        "question": question, "reply": reply_text, "raw": text, "tokens": tokens, "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 2) if seconds > 0 else 0.0, "seed": seed, "retried": retried,
        "prompt_messages": len(messages), "dropped_turns": dropped,
    }


def reply(
    turns: list[str],
    llm: LLMEngine,
    config: LLMConfig,
    out_path: Path,
    on_text: Callable[[str], None] | None = None,
    note: Callable[[str], None] = lambda msg: None,
    on_turn: Callable[[int, str], None] | None = None,
    history: list[dict] | None = None,
) -> dict:
    """Answer `turns` in order; `history` is the conversation before them (a served session's
    earlier turns), and the turns are numbered on from it, for their seeds, as chat numbers them."""
    system = {"role": "system", "content": system_prompt(config.persona, config.max_reply_words)}
    history = list(history or [])
    before = len(history) // 2
    records = []
    for i, question in enumerate(turns):
        if on_turn:
            on_turn(i, question)
        record = answer(question, before + i, system, history, llm, config, on_text, note,
                        records[-1]["dropped_turns"] if records else 0)
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": record["reply"]}]
        records.append(record)
    result = {"system": system["content"], "turns": records, "messages": [system, *history]}
    write_json_atomic(out_path, result)
    return result
