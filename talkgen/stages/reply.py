"""reply: questions -> the avatar's answers (reply.json), one conversation.

A script's paragraphs are successive turns: the model sees the earlier questions and
its own answers. When a turn would not fit the context window, the oldest turns are
dropped first, and the caller is told.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from talkgen.engines.llm import LLMEngine
from talkgen.errors import TalkgenError
from talkgen.job import write_json_atomic
from talkgen.stages import Context, Stage, put_text
from talkgen.text.script import PHRASE_MIN_AFTER, has_words, phrase_cuts, pieces, pieces_of, sentences

if TYPE_CHECKING:
    from talkgen.job import StageRecord
    from talkgen.recipe import LLMConfig

# The code that makes reply.json, for the stage's cache key (talkgen.job.code_hash); the LLM's own module is added to it.
MADE_BY = (__name__,)
RETRY_SEED_OFFSET = 7919


def system_prompt(persona: str, max_words: int) -> str:
    return (
        f"You are {persona.strip().rstrip('.')}. You are speaking aloud in a video, so answer in plain spoken "
        f"sentences of at most {max_words} words in all: no lists, no markdown, no emoji, no stage directions."
    )


MARKDOWN = re.compile(r"[*_#`>|]+")  # what the voice would read out
SENTENCE_MARKS = ".!?…"


def bound_words(text: str, max_words: int) -> str:
    """Keep at most max_words words, ending at a sentence end when one is in reach."""
    text = MARKDOWN.sub(" ", text)
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


def _written(text: str, max_words: int, done: bool = False) -> list[str]:
    """The reply's words that are written for good, within the budget, as bound_words reads them:
    until the model is done, the last word may still go on, and is left out."""
    text = MARKDOWN.sub(" ", text)
    words = text.split()
    if not done and words and not text[-1:].isspace():
        words = words[:-1]
    return words[:max_words]


def decided(text: str, max_words: int, done: bool = False) -> list[str]:
    """The sentences of a reply that the text written so far already decides: whatever the model
    writes next, bound_words keeps them as they are.

    bound_words keeps whole words up to max_words and, past that, cuts at the last sentence mark
    in them (or adds a full stop): so a sentence whose words are all written, within the budget,
    and that ends in a sentence mark or has one after it in those words, is kept whole, and so is
    the split after it, once the next sentence has begun. The last word written may still go on,
    and is not counted.
    """
    cut = " ".join(_written(text, max_words, done))
    found = sentences(cut)
    if done:
        return found
    out, pos = [], 0
    for sentence in found[:-1]:
        end = cut.index(sentence, pos) + len(sentence)
        if sentence[-1] not in ".!?" and not any(mark in cut[end:] for mark in ".!?"):
            break  # ends in an ellipsis or a closing quote: bound_words could cut it short
        out.append(sentence)
        pos = end
    return out


def decided_pieces(text: str, max_words: int, done: bool = False) -> list[tuple[str, bool]]:
    """The pieces the voice says (text.script.pieces: the first sentence in phrases) that the
    reply written so far already decides, each with whether it ends a sentence.

    The decided sentences (decided()) give theirs. While the first sentence is still being
    written, its phrases whose cut phrase_cuts already makes are decided too, as long as no word
    from the reply's start to PHRASE_MIN_AFTER words past the cut holds a sentence mark: only a
    mark there could let bound_words end the reply before those words. Past the budget, the
    reply is cut no earlier than that mark or than max_words words, and both keep them.
    """
    whole = decided(text, max_words, done)
    if whole or done:
        return pieces_of(whole)
    words = _written(text, max_words)
    if len(sentences(" ".join(words))) != 1:
        return []  # a sentence that decided() holds back (an ellipsis, a closing quote)
    out, start = [], 0
    for cut in phrase_cuts(words):
        if any(mark in word for word in words[: cut + PHRASE_MIN_AFTER] for mark in SENTENCE_MARKS):
            break
        out.append((" ".join(words[start:cut]), False))
        start = cut
    return out


class PieceStream:
    """Hands on each piece the voice says (decided_pieces) as soon as the reply decides it, while
    the model writes; at the end, the rest. The voice can speak the first ones meanwhile."""

    def __init__(self, max_words: int, on_piece: Callable[[str, bool], None]):
        self.max_words, self.on_piece = max_words, on_piece
        self.text = ""
        self.sent: list[tuple[str, bool]] = []

    def write(self, piece: str) -> None:
        self.text += piece
        for item in decided_pieces(self.text, self.max_words)[len(self.sent):]:
            self.sent.append(item)
            self.on_piece(*item)

    def again(self) -> None:
        """The model starts the reply over (an empty reply, retried): nothing was handed on."""
        assert not self.sent, "an empty reply has no sentences"
        self.text = ""

    def finish(self, reply_text: str) -> bool:
        """The rest of the reply; False (and nothing more handed on) if what was handed on is not how it begins."""
        final = pieces(" ".join(reply_text.split()))
        if final[: len(self.sent)] != self.sent:
            return False
        for item in final[len(self.sent):]:
            self.sent.append(item)
            self.on_piece(*item)
        return True


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
    on_piece: Callable[[str, bool], None] | None = None,
) -> dict:
    """One turn: the reply to `question` given the conversation so far (history is not changed).

    The seed is llm.seed plus the turn's index, so a conversation replays the same way.
    `dropped` is the last turn's "dropped_turns": the oldest turns it left out of the prompt.
    `on_piece(piece, ends_sentence)` hears each piece of the reply the voice says (text.script.pieces),
    in order, as soon as it is decided.
    """
    import time

    messages, dropped = fit_context(system, history, {"role": "user", "content": question}, llm,
                                    config.context_tokens - config.max_new_tokens, note, dropped)
    stream = PieceStream(config.max_reply_words, on_piece) if on_piece else None
    if stream is not None:
        shown = on_text

        def on_text(piece: str) -> None:
            if shown:
                shown(piece)
            stream.write(piece)

    seed = config.seed + index
    t = time.perf_counter()
    text, tokens = llm.chat(messages, seed, on_text, config.max_reply_words)
    reply_text = bound_words(text, config.max_reply_words)
    retried = False
    if not has_words(reply_text):
        note(f"the model gave an empty reply to turn {index + 1}: trying once more with another seed")
        retried, seed = True, seed + RETRY_SEED_OFFSET
        if stream is not None:
            stream.again()
        text, tokens = llm.chat(messages, seed, on_text, config.max_reply_words)
        reply_text = bound_words(text, config.max_reply_words)
        if not has_words(reply_text):
            raise TalkgenError(f"the model gave an empty reply to turn {index + 1} twice: change llm.seed or the question")
    seconds = time.perf_counter() - t
    record = {
        "question": question, "reply": reply_text, "raw": text, "tokens": tokens, "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 2) if seconds > 0 else 0.0, "seed": seed, "retried": retried,
        "prompt_messages": len(messages), "dropped_turns": dropped,
    }
    if stream is not None and not stream.finish(reply_text):
        from talkgen.feeds import Restart

        raise Restart(f"the reply as streamed ({stream.sent}) is not how the reply as written begins", record)
    return record


def origin(system: dict, history: list[dict], question: str, index: int, dropped: int, config: LLMConfig) -> str:
    """The key of the reply answer() makes of these, known before it is written: what a voice that
    speaks it as it is written (a chat turn's) keys its speech by."""
    from talkgen.engines.llm import llm_identity
    from talkgen.engines.registry import module_of, output_settings
    from talkgen.job import cache_key, code_hash

    return cache_key(system=system, history=history, question=question, index=index, dropped=dropped, llm=llm_identity(config),
                     settings=output_settings("llm", config), talkgen=code_hash(*MADE_BY, module_of("llm", config.engine)))


def reply(
    turns: list[str],
    llm: LLMEngine,
    config: LLMConfig,
    out_path: Path,
    on_text: Callable[[str], None] | None = None,
    note: Callable[[str], None] = lambda msg: None,
    on_turn: Callable[[int, str], None] | None = None,
    on_piece: Callable[[int, str, bool], None] | None = None,
    history: list[dict] | None = None,
) -> dict:
    """Answer `turns` in order; `history` is the conversation before them (a served session's
    earlier turns), and the turns are numbered on from it, for their seeds, as chat numbers them.
    `on_piece(turn, piece, ends_sentence)` hears each piece the voice says as soon as it is decided."""
    system = {"role": "system", "content": system_prompt(config.persona, config.max_reply_words)}
    history = list(history or [])
    before = len(history) // 2
    records = []
    for i, question in enumerate(turns):
        if on_turn:
            on_turn(i, question)
        said = (lambda piece, last, i=i: on_piece(i, piece, last)) if on_piece else None
        record = answer(question, before + i, system, history, llm, config, on_text, note,
                        records[-1]["dropped_turns"] if records else 0, said)
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": record["reply"]}]
        records.append(record)
    result = {"system": system["content"], "turns": records, "messages": [system, *history]}
    write_json_atomic(out_path, result)
    return result


# -- the stage ---------------------------------------------------------------------------

def _turns(ctx: Context) -> list[str]:
    from talkgen.text.script import paragraphs

    if ctx.source.kind == "audio":
        return [ctx.feeds.transcript.wait()["text"]]
    return paragraphs(ctx.source.text)


def _key(ctx: Context) -> str:
    from talkgen.engines.llm import llm_identity
    from talkgen.engines.registry import module_of, output_settings
    from talkgen.job import cache_key, code_hash, sha256_text
    from talkgen.text.script import paragraphs

    c = ctx.recipe.llm
    turns = ctx.keys["transcribe"] if ctx.source.kind == "audio" else [sha256_text(t) for t in paragraphs(ctx.source.text)]
    history = ctx.source.history
    earlier = {"history": sha256_text(json.dumps(history, sort_keys=True))} if history else {}
    return cache_key(turns=turns, llm=llm_identity(c), settings=output_settings("llm", c), **earlier,
                     talkgen=code_hash(*MADE_BY, module_of("llm", c.engine)))


def _run(ctx: Context) -> StageRecord:
    from talkgen.job import StageRecord

    c = ctx.recipe.llm
    loads = sum(ctx.engines.loads.values())
    llm = ctx.engines.llm(c, ctx.recipe.name)  # while the question is still being heard, when the stages overlap
    loaded = sum(ctx.engines.loads.values()) > loads  # else a worker's LLM, loaded for an earlier job
    ctx.feeds.writer.set(True)  # not the engine: the holder may let it go after this stage, and its memory with it
    turns = _turns(ctx)
    text = ctx.feeds.text
    # While the voice waits for this reply (its stage runs beside this one), each piece goes to it as soon as it is decided.
    streamed = (lambda turn, piece, last: text.put((turn, piece, last))) if ctx.overlapped else None
    result = reply(turns, llm, c, ctx.job.path("reply.json"), on_text=ctx.progress.text, note=ctx.progress.note,
                   on_turn=ctx.progress.turn, on_piece=streamed, history=ctx.source.history)
    if streamed is None:
        _hand_on(ctx, result)
    else:
        ctx.values["replies"] = result
        text.close()
    tokens = sum(t["tokens"] for t in result["turns"])
    gen_s = sum(t["seconds"] for t in result["turns"])
    return StageRecord(key="", device=c.device, outputs=ctx.job.output_hashes(["reply.json"]), extra={
        "turns": len(turns), "import_s": round(llm.import_s if loaded else 0.0, 3),
        "convert_s": round(llm.convert_s if loaded else 0.0, 3), "load_s": round(llm.load_s if loaded else 0.0, 3),
        "loaded": loaded, "tokens": tokens, "tokens_per_s": round(tokens / gen_s, 2) if gen_s else 0.0,
    })


def _load(ctx: Context) -> None:
    ctx.feeds.writer.set(True)
    _hand_on(ctx, json.loads(ctx.job.path("reply.json").read_text(encoding="utf-8")))


def spoken(result: dict) -> str:
    """What the voice says of the replies: one paragraph a turn."""
    return "\n\n".join(t["reply"] for t in result["turns"])


def _hand_on(ctx: Context, result: dict) -> None:
    ctx.values["replies"] = result
    put_text(ctx.feeds.text, spoken(result))


def _engine(ctx: Context) -> tuple[str, str]:
    from talkgen.engines.llm import llm_identity

    return ctx.recipe.llm.engine, llm_identity(ctx.recipe.llm).get("transformers", "")


STAGE = Stage("reply", reads=("input", "transcribe"), writes=("reply.json",), roles=("llm",), kept="the replies",
              applies=lambda source: not source.say, key=_key, run=_run, load=_load, engine=_engine)
