"""LiveAvatar (Alibaba-Quark/LiveAvatar: a LoRA on Wan2.2-S2V-14B), driven from the user's checkout.

It is not on PyPI, so talkgen imports it from a clone named by render.liveavatar.checkout
or $TALKGEN_LIVEAVATAR, and never edits it. One process on one GPU runs the offloading
pipeline (`causal_s2v_pipeline`); exactly five ranks run the TPP pipeline
(`causal_s2v_pipeline_tpp`: one denoising step on each of 4 DiT ranks and one rank
decoding the VAE). Everything is checked before anything heavy is loaded.

Continuity: LiveAvatar starts every generate() call from motion frames made by repeating
the reference image, so back-to-back chunks would each restart from the still portrait.
A subclass of their pipeline swaps the frames fed to that motion encoding for the last
frames of the previous chunk, so the next chunk moves on from where the last one stopped.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from talkgen.engines.avatar import AvatarParts, AvatarTraits
from talkgen.engines.registry import Backend, Finding, Settings
from talkgen.errors import TalkgenError

if TYPE_CHECKING:
    import numpy as np

    from talkgen.engines.footprint import Need
    from talkgen.gpus import Gpu
    from talkgen.portrait import Portrait
    from talkgen.recipe import LiveAvatarConfig, RenderConfig
    from talkgen.speech import SpeechTrack

PIPELINE = "liveavatar/models/wan/causal_s2v_pipeline.py"
# Module names LiveAvatar's own launcher keeps out of FP8 (small, precision-sensitive layers).
FP8_KEEP = ["text_embedding", "time_embedding", "time_projection", "head.head", "casual_audio_encoder.encoder.final_linear"]
# LiveAvatar asks for about 60 GB in single-GPU offload mode and an 80 GB card per rank for
# TPP. Cards report their memory in GiB (an "80 GB" H100 shows 79.6), so compare in GiB with
# room for that.
SINGLE_GPU_GIB, TPP_GPU_GIB = 55.0, 75.0
AUDIO_RATE = 16000
# The upstream commit this adapter was checked against, line by line.
UPSTREAM = "Alibaba-Quark/LiveAvatar@9c2c38d"
# generate() drops the first 3 frames it decodes: its frame k shows audio frame k + 3. So
# talkgen hands it audio from 3 frames before the chunk (the lead) and gets back exactly the
# chunk's frames, each on its own audio frame, with nothing held or thrown away.
DROPPED = 3
LORA_FILE = "liveavatar.safetensors"  # the name their load_state_dict fetches from the hub repo
MIN_AREA = 64 * 64  # the smallest area that holds one of LiveAvatar's frames (multiples of 64)
# The largest: their KV caches have fixed room for the reference and motion tokens (2800 on
# one GPU, 3000 in TPP, "hard-coded for 720*400 resolution"), and a larger frame overflows
# them in the first chunk, after the 14B load.
MAX_AREA = 720 * 400
# What their code is written for: TPP hands denoising step i to rank i and decodes on the
# next rank; one GPU keeps a KV cache for each of 4 steps; audio features come at 25 fps;
# a clip is denoised in blocks of 3 latent frames, 12 video frames.
TPP_DIT, SINGLE_GPU_STEPS, FPS, BLOCK_FRAMES = 4, 4, 25, 12


def checkout_dir(la: LiveAvatarConfig) -> Path | None:
    value = la.checkout or os.environ.get("TALKGEN_LIVEAVATAR", "")
    return Path(value) if value else None


def weight_dirs(la: LiveAvatarConfig) -> tuple[Path, Path]:
    """The folders named in the recipe, else the weights manifest's (read in talkgen's own
    process only: the ranks get both resolved, see resolved_paths)."""

    def folder(value: str, model: str) -> Path:
        if value:
            return Path(value)
        from talkgen.weights import local_dir

        return local_dir(model)

    return folder(la.ckpt_dir, "wan2.2-s2v-14b"), folder(la.lora_dir, "live-avatar")


def resolved_paths(la: LiveAvatarConfig) -> dict:
    """The checkout and weight folders as absolute paths, for ranks that cannot read the manifest."""
    root = checkout_dir(la)
    ckpt, lora = weight_dirs(la)
    return {"checkout": str(root.resolve()) if root else "", "ckpt_dir": str(ckpt.resolve()), "lora_dir": str(lora.resolve())}


def output_rank(config: RenderConfig) -> int:
    la = config.liveavatar
    if config.nproc == 1:
        return 0
    return la.num_gpus_dit if la.enable_vae_parallel else la.num_gpus_dit - 1


def max_area(la: LiveAvatarConfig) -> int:
    """The pixel area render.liveavatar.size names. LiveAvatar takes only the area from it:
    its frames keep the reference image's shape (see LiveAvatarEngine._frame_size)."""
    try:
        w, h = (int(v) for v in la.size.split("*"))
    except ValueError:
        raise TalkgenError(f"render.liveavatar.size '{la.size}' must be WIDTH*HEIGHT, e.g. 704*384") from None
    return w * h


def identity(config: RenderConfig) -> dict:
    la = config.liveavatar
    return {"engine": "liveavatar", "version": metadata.version("talkgen"), "code": _code_hash(), "checkout": _checkout_id(la),
            "settings": {k: v for k, v in la.__dict__.items() if k not in ("checkout", "ckpt_dir", "lora_dir")}}


def traits(config: RenderConfig) -> AvatarTraits:
    la = config.liveavatar
    return AvatarTraits(
        max_chunk_s=la.infer_frames * la.clips_per_chunk / config.fps,
        frames_per_clip=la.infer_frames,
        lead_frames=DROPPED,
        world_size=config.nproc,
        identity=identity(config),
        check={"lip_sync": True},  # it claims lip sync; until calibrated, check's puppet bounds apply
    )


def gpu_need_gib(config: RenderConfig) -> float:
    """GiB each avatar GPU needs: the recipe's figure, else LiveAvatar's own for its mode."""
    la = config.liveavatar
    return la.min_gpu_gb or (SINGLE_GPU_GIB if config.nproc == 1 else TPP_GPU_GIB)


def memory_need(config: RenderConfig, device: str) -> Need | None:
    if device == "cpu":
        return None
    from talkgen.engines.footprint import Need

    return Need("avatar", "liveavatar", device, float(gpu_need_gib(config)), source="LiveAvatar's figure")


def formats(config: RenderConfig) -> list[tuple[str, str]]:
    if config.device != "cuda":
        return []
    return [("bf16", "render.dtype=bfloat16"), *([("fp8", "render.liveavatar.fp8")] if config.liveavatar.fp8 else [])]


def rank_settings(config: RenderConfig) -> dict:
    return {"liveavatar": resolved_paths(config.liveavatar)}


def doctor_findings(config: RenderConfig) -> list[Finding]:
    root = checkout_dir(config.liveavatar)
    if root is None:
        return [Finding("liveavatar", False, "no LiveAvatar checkout configured",
                        "git clone https://github.com/Alibaba-Quark/LiveAvatar and set TALKGEN_LIVEAVATAR (or render.liveavatar.checkout) to it")]
    if not (root / PIPELINE).is_file():
        return [Finding("liveavatar", False, f"{root} is not a LiveAvatar checkout (no {PIPELINE})",
                        "point TALKGEN_LIVEAVATAR at a clone of github.com/Alibaba-Quark/LiveAvatar")]
    return [Finding("liveavatar", True, f"checkout {root}")]


def preflight(config: RenderConfig, gpus: list["Gpu"]) -> list[str]:
    """Everything that would stop LiveAvatar, found before loading 14B parameters.

    `gpus` are the GPUs the ranks will see, as nvidia-smi lists them: reading them does not
    start CUDA in talkgen's own process."""
    la = config.liveavatar
    problems = _setting_problems(config)
    try:
        if max_area(la) < MIN_AREA:
            problems.append(f"render.liveavatar.size={la.size} is too small: LiveAvatar's frames are multiples of 64 on each side, "
                            "so set an area of at least 64*64 (704*384 gives 512x512 frames)")
        elif max_area(la) > MAX_AREA:
            problems.append(f"render.liveavatar.size={la.size} is too large: LiveAvatar's caches have room for frames of up to "
                            "720*400 pixels: set render.liveavatar.size=704*384 or smaller")
    except TalkgenError as exc:
        problems.append(str(exc))
    root = checkout_dir(la)
    if root is None:
        problems.append("no LiveAvatar checkout: clone github.com/Alibaba-Quark/LiveAvatar and set render.liveavatar.checkout or TALKGEN_LIVEAVATAR")
    elif not (root / PIPELINE).is_file():
        problems.append(f"{root} is not a LiveAvatar checkout (no {PIPELINE})")
    ckpt, lora = weight_dirs(la)
    if not ckpt.is_dir() or not any(ckpt.iterdir()):
        problems.append(f"Wan2.2-S2V-14B weights missing in {ckpt}: talkgen weights pull --model wan2.2-s2v-14b (or set render.liveavatar.ckpt_dir)")
    if la.lora and (not lora.is_dir() or not any(lora.iterdir())):
        problems.append(f"Live-Avatar LoRA missing in {lora}: talkgen weights pull --model live-avatar (or set render.liveavatar.lora_dir)")
    if config.device == "cuda":
        need = gpu_need_gib(config)
        if len(gpus) < config.nproc:
            problems.append(f"{config.nproc} GPU(s) needed, {len(gpus)} visible")
        small = [f"GPU {i} ({g.name}, {g.memory_gib:.0f} GiB)" for i, g in enumerate(gpus[: config.nproc]) if g.memory_gib < need]
        if small:
            problems.append(f"LiveAvatar needs {need:.0f} GiB per GPU here: {', '.join(small)} has less")
        # torch._scaled_mm exists on an A100 too; only the first FP8 forward fails there.
        no_fp8 = [f"GPU {i} ({g.name}, compute {g.compute_cap[0]}.{g.compute_cap[1]})"
                  for i, g in enumerate(gpus[: config.nproc]) if la.fp8 and g.fp8 is False]
        if no_fp8:
            problems.append(f"render.liveavatar.fp8 needs compute capability 8.9 or newer (Ada, Hopper): {', '.join(no_fp8)} "
                            "has no FP8 matmul: set render.liveavatar.fp8=false")
    return problems


def _setting_problems(config: RenderConfig) -> list[str]:
    """Settings LiveAvatar's code cannot run with, though it would start with them."""
    la, problems = config.liveavatar, []
    if config.nproc not in (1, TPP_DIT + 1):
        problems.append(f"render.nproc={config.nproc}: LiveAvatar runs on 1 GPU (offloading) or on exactly {TPP_DIT + 1} ranks "
                        f"({TPP_DIT} DiT + 1 VAE): set render.nproc=1 or {TPP_DIT + 1}")
    elif config.nproc > 1:
        # Any other split leaves a rank waiting in recv for a step no rank runs, or runs a
        # step on a rank that has no KV cache.
        if la.num_gpus_dit != TPP_DIT:
            problems.append(f"render.liveavatar.num_gpus_dit={la.num_gpus_dit}: LiveAvatar's {TPP_DIT + 1} ranks are {TPP_DIT} DiT "
                            f"ranks and 1 VAE rank: set render.liveavatar.num_gpus_dit={TPP_DIT}")
        if not la.enable_vae_parallel:
            problems.append("render.liveavatar.enable_vae_parallel=false: LiveAvatar's multi-GPU mode decodes on a rank of its own: "
                            "set render.liveavatar.enable_vae_parallel=true")
        if la.sample_steps != TPP_DIT:
            problems.append(f"render.liveavatar.sample_steps={la.sample_steps}: on {TPP_DIT + 1} ranks each DiT rank runs one "
                            f"step: set render.liveavatar.sample_steps={TPP_DIT}")
    elif la.sample_steps > SINGLE_GPU_STEPS:
        problems.append(f"render.liveavatar.sample_steps={la.sample_steps}: LiveAvatar on one GPU has KV caches for "
                        f"{SINGLE_GPU_STEPS} steps: set render.liveavatar.sample_steps={SINGLE_GPU_STEPS} or fewer")
    if config.device == "cuda" and config.nproc == 1 and config.launcher != "torchrun" and config.gpus not in ("", "0"):
        # Their one-GPU pipeline puts its model and caches on cuda:0 whatever device it is given.
        problems.append(f"placement.avatar=cuda:{config.gpus}: LiveAvatar's one-GPU pipeline always runs on cuda:0: "
                        "set placement.avatar=cuda:0, or render.launcher=torchrun to hand its rank that GPU as its cuda:0")
    if config.dtype != "bfloat16":
        problems.append(f"render.dtype={config.dtype}: LiveAvatar always runs in bfloat16 (its param_dtype): set render.dtype=bfloat16")
    if la.solver != "euler":
        problems.append(f"render.liveavatar.solver={la.solver}: LiveAvatar samples only with euler: set render.liveavatar.solver=euler")
    if config.fps != FPS:
        problems.append(f"render.fps={config.fps}: LiveAvatar's audio features and video run at {FPS} fps: set render.fps={FPS}")
    if la.infer_frames <= 0 or la.infer_frames % BLOCK_FRAMES:
        problems.append(f"render.liveavatar.infer_frames={la.infer_frames}: LiveAvatar denoises blocks of {BLOCK_FRAMES} frames: "
                        "set a multiple of 12, e.g. 48")
    return problems


def visible_gpus(selection: str = "") -> list["Gpu"]:
    """The GPUs the ranks will see, read by talkgen.gpus (nvidia-smi, not CUDA); `selection`
    is placement.avatar's list, which counts within CUDA_VISIBLE_DEVICES as torch does."""
    from talkgen.gpus import read_gpus, select, visible

    return select(visible(read_gpus().gpus), selection)


def _continuing(base):
    """Their pipeline class, with the motion frames of each generate() seedable from outside."""

    class Continuing(base):
        seed_frames = None  # float tensor (1, 3, T, H, W) in [-1, 1]: the previous chunk's last frames

        def generate(self, *args, **kwargs):
            if self.seed_frames is None:
                return super().generate(*args, **kwargs)
            vae, seed = self.vae, self.seed_frames
            original = vae.encode
            calls = {"n": 0}

            def encode(videos, *a, **kw):
                # generate() encodes the reference clip first and the motion frames second. The
                # seed is written into their tensor rather than passed in its place: the one-GPU
                # pipeline keeps a detach() of that tensor (videos_last_frames) as the start of
                # the decode context for the chunk's second clip, and must see the seed there too.
                calls["n"] += 1
                if calls["n"] == 2:
                    for v in videos if isinstance(videos, list) else [videos]:
                        v.copy_(_fit(v, seed))
                return original(videos, *a, **kw)

            vae.encode = encode
            try:
                return super().generate(*args, **kwargs)
            finally:
                vae.encode = original

    return Continuing


def _fit(target, seed):
    """`seed` frames shaped like `target` (…, C, T, H, W): resized, and the oldest repeated if too few."""
    import torch

    t, h, w = target.shape[-3:]
    frames = seed.to(device=target.device, dtype=target.dtype)
    if frames.shape[-2:] != (h, w):
        b, c, n = frames.shape[:3]
        flat = frames.permute(0, 2, 1, 3, 4).reshape(b * n, c, *frames.shape[-2:])
        flat = torch.nn.functional.interpolate(flat, size=(h, w), mode="bilinear", align_corners=False)
        frames = flat.reshape(b, n, c, h, w).permute(0, 2, 1, 3, 4)
    n = frames.shape[2]
    if n < t:
        frames = torch.cat([frames[:, :, :1].expand(-1, -1, t - n, -1, -1), frames], dim=2)
    frames = frames[:, :, -t:]
    return frames.reshape(target.shape)


def check(config: RenderConfig) -> None:
    """Raise one line listing every problem, before anything is loaded or any rank launched."""
    # In a torchrun rank the launcher has already narrowed CUDA_VISIBLE_DEVICES to the
    # avatar's cards, so every card the rank sees is one of them, renumbered from 0.
    in_rank = "TORCHELASTIC_RUN_ID" in os.environ
    problems = preflight(config, visible_gpus("" if in_rank else config.gpus) if config.device == "cuda" else [])
    if problems:
        raise TalkgenError("LiveAvatar cannot run: " + "; ".join(problems))


class LiveAvatarEngine:
    def __init__(self, config: RenderConfig, portrait: "Portrait", rank: int = 0, world_size: int = 1, device: str = "cpu", state_dir: Path | None = None):
        la = config.liveavatar
        check(config)
        self.config, self.la, self.rank, self.world_size = config, la, rank, world_size
        self.fps = config.fps
        self.frames_per_clip = la.infer_frames
        self.lead_frames = DROPPED
        self.max_chunk_s = la.infer_frames * la.clips_per_chunk / config.fps
        self.output_rank = output_rank(config)
        self.portrait = portrait
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="talkgen-liveavatar-"))
        self._tmp = Path(tempfile.mkdtemp(prefix="talkgen-liveavatar-io-"))
        self._ref = self._tmp / "portrait.png"
        from talkgen.png import write_png

        write_png(self._ref, portrait.image)
        self._last: Any = None
        self.pipe = self._load(checkout_dir(la), device)
        self.height, self.width = self._frame_size()

    def _frame_size(self) -> tuple[int, int]:
        """(height, width) of the frames LiveAvatar will make from our portrait, asked of the
        pipeline itself: generate() ignores generate_size and sizes frames from the reference
        image, scaled within max_area and rounded to multiples of 64. Every rank knows it
        before the first chunk, so the output rank's encoder opens at the frames' real size."""
        h, w = (int(v) for v in self.pipe.get_gen_size(size=None, max_area=max_area(self.la), ref_image_path=str(self._ref),
                                                       pre_video_path=None))
        if h <= 0 or w <= 0:
            side = self.portrait.image.shape[0]
            raise TalkgenError(f"render.liveavatar.size={self.la.size} leaves LiveAvatar no frame for a {side}x{side} portrait: "
                               "set a larger area, e.g. 704*384")
        return h, w

    def _load(self, root: Path, device: str):
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        suffix = "_tpp" if self.world_size > 1 else ""
        pipeline = importlib.import_module(f"liveavatar.models.wan.causal_s2v_pipeline{suffix}")
        configs = importlib.import_module("liveavatar.models.wan.wan_2_2.configs")
        la = self.la
        if self.world_size == 1:
            from talkgen.ranks.group import ensure_single_process_group

            ensure_single_process_group(self._tmp)
        ckpt, lora = weight_dirs(la)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        pipe = _continuing(pipeline.WanS2V)(
            config=configs.WAN_CONFIGS[la.task], checkpoint_dir=str(ckpt), device_id=local_rank, rank=self.rank,
            convert_model_dtype=True, single_gpu=self.world_size == 1, offload_kv_cache=False,
        )
        if la.lora:
            settings = _lora_settings(root)
            pipe.noise_model = pipe.add_lora_to_model(
                pipe.noise_model, lora_rank=settings["lora_rank"], lora_alpha=settings["lora_alpha"],
                lora_target_modules=settings["lora_target_modules"], init_lora_weights=settings["init_lora_weights"],
                pretrained_lora_path=str(_lora_file(lora)), load_lora_weight_only=False,
            )
        if la.fp8:
            import torch

            if not hasattr(torch, "_scaled_mm"):
                raise TalkgenError("render.liveavatar.fp8 needs a torch with FP8 matmul (torch._scaled_mm): set it to false")
            fp8 = importlib.import_module("liveavatar.utils.fp8_linear")
            fp8.replace_linear_with_scaled_fp8(pipe.noise_model, ignore_keys=FP8_KEEP)
        return pipe

    def identity(self) -> dict:
        return {**identity(self.config), "portrait": self.portrait.sha256}

    def continuity_after(self, end_frame: int) -> Any:
        return self._last

    def render_chunk(self, track: "SpeechTrack", start_frame: int, end_frame: int, continuity: Any = None) -> Iterator["np.ndarray"]:
        import numpy as np

        la, n = self.la, end_frame - start_frame
        if (n + DROPPED) % la.infer_frames:
            raise TalkgenError(f"a LiveAvatar chunk must be whole clips of {la.infer_frames} frames less the {DROPPED} "
                               f"generate() drops, got {n}: render again to rebuild the plan")
        self.pipe.seed_frames = self._load_seed(continuity)
        wav = self._chunk_audio(track, start_frame - DROPPED, end_frame)
        video, _ = self.pipe.generate(
            input_prompt=la.prompt, ref_image_path=str(self._ref), audio_path=str(wav), num_repeat=(n + DROPPED) // la.infer_frames,
            generate_size=la.size, max_area=max_area(la), infer_frames=la.infer_frames,
            sample_solver=la.solver, sampling_steps=la.sample_steps, seed=la.seed + start_frame,
            offload_model=la.offload and self.world_size == 1, num_gpus_dit=la.num_gpus_dit if self.world_size > 1 else 1,
            enable_vae_parallel=la.enable_vae_parallel and self.world_size > 1, enable_online_decode=False,
        )
        if self.rank != self.output_rank:
            return
        if video is None:
            raise TalkgenError(f"LiveAvatar returned no video on rank {self.rank}, its output rank")
        # (C, N, H, W) in [-1, 1] -> N frames of H x W x 3 uint8.
        frames = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(dtype=__import__("torch").uint8).permute(1, 2, 3, 0).cpu().numpy()
        if frames.shape[1:3] != (self.height, self.width):
            raise TalkgenError(f"LiveAvatar returned {frames.shape[2]}x{frames.shape[1]} frames where its get_gen_size() said "
                               f"{self.width}x{self.height} for this portrait: use a checkout of {UPSTREAM} (render.liveavatar.checkout)")
        if len(frames) != n:
            raise TalkgenError(f"LiveAvatar returned {len(frames)} frames for a chunk of {n}, where its generate() drops "
                               f"{DROPPED} of {n + DROPPED} at {UPSTREAM}: use a checkout of that commit (render.liveavatar.checkout)")
        self._last = self._save_seed(frames, end_frame)
        for frame in frames:
            yield np.ascontiguousarray(frame)

    def _chunk_audio(self, track: "SpeechTrack", start: int, end: int) -> Path:
        """Frames [start, end) of the speech as a 16 kHz WAV, the file their audio encoder
        reads; silence before the speech's first frame (the first chunk's lead)."""
        import numpy as np

        from talkgen.speech import WavWriter

        sr = track.sample_rate
        audio = track.read(start * sr // self.fps, end * sr // self.fps)  # zeros outside the recording
        if sr != AUDIO_RATE:
            idx = np.linspace(0, len(audio) - 1, int(len(audio) * AUDIO_RATE / sr))
            audio = np.interp(idx, np.arange(len(audio)), audio).astype(np.float32)
        path = self._tmp / "chunk.wav"
        w = WavWriter(path, AUDIO_RATE)
        w.write(audio)
        w.close()
        return path

    def _save_seed(self, frames: "np.ndarray", end_frame: int) -> dict:
        """Keep the chunk's last frames on disk, as many as the model's motion window (73
        upstream) where the chunk has them; the continuity state is the file's path. Fewer
        would leave the window's oldest frames as copies of one frame."""
        import numpy as np

        from talkgen.chunks import STATE_FILE

        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / f"motion-{end_frame:07d}.npy"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npy")
        np.save(tmp, frames[-int(self.pipe.motion_frames) :])
        os.replace(tmp, path)
        return {STATE_FILE: str(path.resolve()), "frame": end_frame}

    def _load_seed(self, continuity: Any):
        from talkgen.chunks import state_file

        path = state_file(continuity)
        if path is None:
            return None
        import numpy as np
        import torch

        frames = torch.from_numpy(np.load(path))  # N, H, W, 3 uint8
        return (frames.permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1.0)


BACKEND = Backend(kind="avatar", names=("liveavatar",), identity=identity, check=None, load=LiveAvatarEngine,
                  memory=memory_need, formats=formats, doctor=doctor_findings,
                  avatar=AvatarParts(traits=traits, preflight=check, rank_settings=rank_settings, ranks=True),
                  settings=Settings(
                      # its checkout and weights are in its identity by what they are, not where they lie
                      output=("fps", "device", "dtype", "nproc", *(f"liveavatar.{k}" for k in (
                          "task", "size", "prompt", "infer_frames", "clips_per_chunk", "sample_steps", "solver", "seed", "lora",
                          "fp8", "offload", "num_gpus_dit", "enable_vae_parallel", "min_gpu_gb"))),
                      reload=("fps", "device", "dtype", "nproc", "liveavatar")))


def _lora_settings(root: Path) -> dict:
    """LoRA rank, alpha and targets from LiveAvatar's own training config."""
    import yaml

    data = yaml.safe_load((root / "liveavatar" / "configs" / "s2v_causal_sft.yaml").read_text(encoding="utf-8"))
    return {k: data[k] for k in ("lora_rank", "lora_alpha", "lora_target_modules", "init_lora_weights")}


def _lora_file(folder: Path) -> Path:
    """The LoRA to merge: the file LiveAvatar's own loader takes from Quark-Vision/Live-Avatar
    by name, else (a renamed copy) the first weights file in the folder."""
    named = folder / LORA_FILE
    if named.is_file():
        return named
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".pt", ".bin"))
    if not files:
        raise TalkgenError(f"no LoRA weights ({LORA_FILE}, or any .safetensors or .pt) in {folder}: "
                           "talkgen weights pull --model live-avatar (or set render.liveavatar.lora_dir)")
    return files[0]


def _checkout_id(la: LiveAvatarConfig) -> str:
    root = checkout_dir(la)
    head = root / ".git" / "HEAD" if root else None
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (root / ".git" / ref[5:]).read_text().strip()
        return ref
    except (OSError, AttributeError):
        return str(root) if root else ""


def _code_hash() -> str:
    from talkgen.job import code_hash

    return code_hash(__name__)
