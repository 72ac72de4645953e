"""The reply stage with the real bundled SmolLM2 and with a tiny random Llama saved in transformers' format."""

import json

import pytest

from talkgen.engines.llm import load_llm
from talkgen.errors import TalkgenError
from talkgen.recipe import load_recipe
from talkgen.stages.reply import bound_words, reply, system_prompt


@pytest.fixture(scope="module")
def smol():
    # Replies of at most 12 words: every test here checks the structure of a reply, not its length.
    config = load_recipe("cpu", ["llm.max_reply_words=12"]).llm
    return config, load_llm(config)


@pytest.mark.slow
def test_same_seed_same_reply_and_bounded_length(tmp_path, smol):
    config, llm = smol
    a = reply(["What colour is the sky?"], llm, config, tmp_path / "a.json")
    b = reply(["What colour is the sky?"], llm, config, tmp_path / "b.json")
    assert a["turns"][0]["reply"] == b["turns"][0]["reply"]
    assert a["turns"][0]["reply"]
    assert len(a["turns"][0]["reply"].split()) <= 12
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["messages"][0] == {"role": "system", "content": system_prompt(config.persona, 12)}


@pytest.mark.slow
def test_paragraphs_are_turns_of_one_conversation(tmp_path, smol):
    config, llm = smol
    streamed = []
    out = reply(["My name is Ada.", "What is my name?"], llm, config, tmp_path / "r.json", on_text=streamed.append)
    # The second turn's prompt holds the first question and answer: system, user, assistant, user.
    assert [t["prompt_messages"] for t in out["turns"]] == [2, 4]
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert "".join(streamed).strip()  # tokens were streamed as they came


# A window of 300 tokens with replies of at most 12 words fills at the 7th of 10 turns, and again
# at the 10th: the same pattern of left-out turns as 420 tokens and 25 words, at half the tokens made.
SMALL_WINDOW = ["llm.max_reply_words=12", "llm.context_tokens=300", "llm.max_new_tokens=30"]


@pytest.fixture(scope="module")
def full_window(tmp_path_factory, smol):
    """Ten turns through a window that fills twice: the conversation, its notes and the config."""
    _, llm = smol
    small = load_recipe("cpu", SMALL_WINDOW).llm
    notes = []
    turns = [f"Tell me one short fact about the number {n}." for n in range(1, 11)]
    out = reply(turns, llm, small, tmp_path_factory.mktemp("window") / "r.json", note=notes.append)
    return out, notes, small


@pytest.mark.slow
def test_history_is_cut_oldest_first_when_the_window_is_full(tmp_path, smol, full_window):
    _, llm = smol
    out, notes, small = full_window
    assert any("left out the" in n and "oldest turn" in n for n in notes)
    assert out["turns"][-1]["prompt_messages"] < 2 * len(out["turns"])
    notes = []
    reply(["word " * 400 + "?"], llm, small, tmp_path / "q.json", note=notes.append)
    assert any("kept its first" in n for n in notes)


@pytest.mark.slow
def test_changing_the_seed_changes_the_reply(tmp_path, smol):
    config, llm = smol
    other = load_recipe("cpu", ["llm.max_reply_words=12", "llm.seed=11"]).llm
    a = reply(["Tell me a story about a cat."], llm, config, tmp_path / "a.json")
    b = reply(["Tell me a story about a cat."], llm, other, tmp_path / "b.json")
    assert a["turns"][0]["reply"] != b["turns"][0]["reply"]


def test_bound_words_ends_at_a_sentence_when_it_can():
    assert bound_words("One two three. Four five six seven eight.", 5) == "One two three."
    assert bound_words("**Bold** answer", 10) == "Bold answer"
    assert bound_words("a b c d e f g h", 4) == "a b c d."


# -- a tiny Llama in the real on-disk format, loaded through the real loader -------------------

def _tiny_llama(folder, mute: bool):
    """A 1-layer Llama with a locally trained BPE tokenizer and a ChatML template.

    With mute=True its head can only say end-of-turn or markdown asterisks, whichever way
    its random hidden state points: a model whose replies are always empty once cleaned.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fast = _chat_tokenizer(folder)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False,
                      eos_token_id=fast.eos_token_id, bos_token_id=fast.bos_token_id, pad_token_id=fast.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    if mute:
        with torch.no_grad():
            model.model.norm.weight.zero_()
            model.model.norm.weight[0] = 1.0
            model.lm_head.weight.zero_()
            model.lm_head.weight[fast.eos_token_id, 0] = 100.0
            model.lm_head.weight[fast.convert_tokens_to_ids("*"), 0] = -100.0
    model.save_pretrained(folder)
    return folder


def _chat_tokenizer(folder):
    """A 300-token BPE tokenizer trained here, with a ChatML template, saved into folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["hello there, how are you? the sky is blue. * system user assistant"] * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|im_start|>", pad_token="<|im_end|>")
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    fast.save_pretrained(folder)
    return fast


@pytest.mark.slow
def test_a_local_model_folder_loads_through_the_same_engine(tmp_path):
    folder = _tiny_llama(tmp_path / "tiny", mute=False)
    config = load_recipe("cpu", [f"llm.model={folder}", "llm.max_new_tokens=12"]).llm
    llm = load_llm(config)
    assert not llm.converted
    text, tokens = llm.chat([{"role": "user", "content": "hello"}], seed=3)
    again, _ = llm.chat([{"role": "user", "content": "hello"}], seed=3)
    assert 0 < tokens <= 12 and text == again


def test_an_empty_reply_is_retried_once_then_fails_clearly(tmp_path):
    folder = _tiny_llama(tmp_path / "mute", mute=True)
    config = load_recipe("cpu", [f"llm.model={folder}", "llm.max_new_tokens=6"]).llm
    notes = []
    with pytest.raises(TalkgenError, match="empty reply to turn 1 twice"):
        reply(["hello there"], load_llm(config), config, tmp_path / "r.json", note=notes.append)
    assert any("trying once more with another seed" in n for n in notes)
    assert not (tmp_path / "r.json").exists()


def test_a_hub_id_maps_to_the_pulled_folder_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKGEN_WEIGHTS", str(tmp_path / "weights"))
    config = load_recipe("cpu", ["llm.model=meta-llama/Llama-3.2-3B-Instruct"]).llm
    with pytest.raises(TalkgenError, match="llama-3.2-3b-instruct is not downloaded: run talkgen weights pull --recipe gpu-1x"):
        load_llm(config, recipe="gpu-1x")
    # Once the folder is there (here a tiny Llama standing in for the 3B one), the same id loads it.
    folder = _tiny_llama(tmp_path / "weights" / "Llama-3.2-3B-Instruct", mute=False)
    (folder / ".talkgen-sha256.json").write_text("{}")
    llm = load_llm(config, recipe="gpu-1x")
    assert llm.model.config.model_type == "llama" and llm.identity()["model"] == "meta-llama/Llama-3.2-3B-Instruct"


@pytest.mark.slow
def test_the_next_turn_reuses_the_last_prompts_cache_and_replies_as_a_cold_start_would(tmp_path, smol):
    """The prompt cache is kept between turns, block by block at fixed positions, so a reply is
    the same whether the engine had just answered the turns before it or had done nothing."""
    from talkgen.stages.reply import answer

    short, llm = smol
    turns = ["Tell me about the sea.", "And the mountains?", "What about rivers?", "And forests?", "And deserts?",
             "And the ice at the poles?", "Which of those would you visit first?"]
    # The conversation so far in replies of at most 12 words: six turns of them make prompts of
    # over 200 tokens for fewer tokens generated than five of 25 words. The answers compared are of 25.
    out = reply(turns[:-1], llm, short, tmp_path / "r.json")
    config = load_recipe("cpu", ["llm.max_reply_words=25"]).llm
    system, history = out["messages"][0], out["messages"][1:]
    # The next turn; then a prompt that parts from the kept one inside it (the last turn left
    # out, another question), so the kept cache must be cut back before it is used.
    for hist, question in ((history, turns[-1]), (history[:-2], "Tell me a joke instead.")):
        before = llm.prefilled_tokens
        warm = answer(question, 5, system, hist, llm, config)
        warm_prefilled = llm.prefilled_tokens - before
        cold_llm = load_llm(config)
        cold = answer(question, 5, system, hist, cold_llm, config)
        prompt_tokens = cold_llm.count_tokens([system, *hist, {"role": "user", "content": question}])
        assert prompt_tokens > 200 and cold_llm.prefilled_tokens == prompt_tokens  # cold: every token through the model
        assert warm_prefilled <= prompt_tokens - 128  # warm: at least a block of the conversation came from the cache
        assert warm["raw"] == cold["raw"] and warm["tokens"] == cold["tokens"]


@pytest.mark.slow
def test_a_full_window_leaves_out_enough_old_turns_to_keep_the_next_prompts_beginning_steady(full_window):
    out, notes, _ = full_window
    dropped = [t["dropped_turns"] for t in out["turns"]]
    assert dropped == sorted(dropped) and dropped[-1] >= 2
    # Each time the window fills, several turns go at once, so the count holds for the turns after.
    grew = sum(1 for a, b in zip(dropped, dropped[1:]) if b > a)
    assert grew < len([d for d in dropped if d])
    assert sum("left out the" in n for n in notes) == grew + (dropped[0] > 0)


def test_a_reply_is_handed_on_piece_by_piece_only_where_the_rest_cannot_change_it():
    """decided() and decided_pieces(): whatever the model writes next, the sentences and the pieces
    the voice says (the first sentence in phrases) that they give are how the reply, cut to its
    word budget by bound_words, begins. Checked on every prefix of texts made of the awkward cases
    (abbreviations, decimals, quotes, ellipses, markdown, commas, the budget cut)."""
    import random

    from talkgen.stages.reply import bound_words, decided, decided_pieces
    from talkgen.text.script import pieces, sentences

    rng = random.Random(4)
    words = ["Hello", "world", "the", "Sun", "3.5", "Dr.", "e.g.", "U.S.", "42", "*bold*", "`x`", "\"Quote.\"", "(aside)", "A.",
             "yes!", "why?", "ok,", "etc.", "Mr.", "…", "wait…", "No.", "It's", "#tag", ">", "|", "'so.'", "end.)",
             "so,", "then;", "note:", "well,", "and", "it", "is", "from", "(with", "By", "-", "x-", "so—"]
    released = early = 0
    for _ in range(1500):
        text = "".join(rng.choice(words) + rng.choice(["", ".", "!", "?", ".\"", ")."] if rng.random() < 0.25 else [""])
                       + rng.choice([" ", " ", "  ", "\n", ""]) for _ in range(rng.randint(1, 40)))
        budget = rng.randint(3, 30)
        reply = " ".join(bound_words(text.strip(), budget).split())
        final, final_pieces = sentences(reply), pieces(reply)
        for cut in range(len(text) + 1):
            given = decided(text[:cut], budget)
            assert final[: len(given)] == given, (text[:cut], budget)
            released += len(given) and cut < len(text)
            given_pieces = decided_pieces(text[:cut], budget)
            assert final_pieces[: len(given_pieces)] == given_pieces, (text[:cut], budget)
            early += not given and bool(given_pieces)
    assert released > 1000  # sentences do go before the reply ends
    assert early > 100  # and phrases of the first sentence before it ends
    assert decided("Hello world. The sun is hot. And so", 60) == ["Hello world.", "The sun is hot."]
    assert decided_pieces("Bees make honey from nectar, which they bring ", 60) == [("Bees make honey from nectar,", False)]
    assert decided_pieces("Bees make honey from nectar, which they bring", 60) == []  # "bring" may go on: three words must follow
    assert decided_pieces("It is 3.5 km away, which is far", 60) == []  # "3." could end a reply cut to its budget


def test_the_first_sentence_of_each_paragraph_is_said_in_phrases_and_the_rest_whole():
    from talkgen.text.script import paragraphs, phrases, pieces

    assert phrases("Bees make honey from nectar, which they collect from flowers, and they store it.") == [
        "Bees make honey from nectar,", "which they collect from flowers,", "and they store it."]
    assert phrases("Yes, I do.") == ["Yes, I do."]  # a phrase has three words, and three follow it
    assert phrases("I know that one well, me too.") == ["I know that one well, me too."]
    assert phrases("Here is the list: apples, pears and figs.") == ["Here is the list:", "apples, pears and figs."]
    # The first phrase may end before a joining word, once it has five words.
    assert phrases("Bees make honey by collecting nectar from flowers with their tongues.") == [
        "Bees make honey by collecting nectar", "from flowers with their tongues."]
    assert phrases("It was a cold day (with snow on the hills).") == ["It was a cold day", "(with snow on the hills)."]
    assert phrases("Cats purr when they are happy.") == ["Cats purr when they are happy."]
    assert phrases("Autumn is lovely — the leaves turn red.") == ["Autumn is lovely —", "the leaves turn red."]
    assert phrases("It is as simple as it sounds - bees collect nectar.") == ["It is as simple as it sounds -", "bees collect nectar."]
    assert phrases("See the x- and y-axis here.") == ["See the x- and y-axis here."]
    text = "I'm Joe, a talking head. I say things, one by one, all day.\n\nWell, hello there, my friend; how are you?"
    assert [pieces(p) for p in paragraphs(text)] == [
        [("I'm Joe, a talking head.", True), ("I say things, one by one, all day.", True)],
        [("Well, hello there,", False), ("my friend; how are you?", True)]]
