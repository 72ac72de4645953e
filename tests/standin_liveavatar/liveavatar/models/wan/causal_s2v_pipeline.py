"""Stand-in WanS2V: LiveAvatar's constructor and generate() signature over a tiny CPU model.

What it keeps of upstream (Alibaba-Quark/LiveAvatar at 9c2c38d), each where talkgen's tests
depend on it, with the file and line it restates:
- sizes frames from the reference image within max_area, ignoring generate_size
  (get_size_less_than_area, causal_s2v_pipeline.py L349);
- encodes the audio of the file it is given, normalised over that file alone, as
  wav2vec2's processor does (encode_audio L443, audio_encoder.py L66-89), into one feature
  per 25 fps frame, zero past the end of the audio (audio_encoder.py L164-217);
- encodes the reference, then the motion frames made by repeating it (L892-898), and keeps a
  detach() of those pixels as the start of the decode context (L897);
- makes its KV cache anew in every generate() call (L935) and fills it from that call's
  reference and motion latents, so nothing of one call's portrait reaches the next;
- denoises each clip from noise seeded with seed + clip (L942), in blocks of 3 latent
  frames, and calls its model once per step; each call draws random.randint(4, 30) from
  Python's unseeded generator (causal_model_s2v.py L1139-1140), which moves the result;
- asks torch.distributed for the rank at every block (L1059), so it needs a process group;
- samples only with euler (L920), and returns num_repeat * infer_frames - 3 frames: the
  first clip's first 3 are dropped (L1170), so frame k shows audio frame k + 3.

Each frame is the reference image brightened by the audio feature of its frame and shifted
by the mean of the motion frames the call encoded, so a test can see both the speech and
what the motion frames were seeded with. The latents are one number per frame, four per
latent frame (the VAE's 4x temporal stride), not pictures.
"""

import json
import math
import os
import random
import wave

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

LOG = []  # one dict per generate() call, for the tests; also appended to $LIVEAVATAR_STANDIN_LOG (the ranks')
STRIDE = 4  # frames per latent frame
BLOCK = 3  # latent frames per block (wan_s2v_14B_modified.py num_frames_per_block)
GAIN = 0.1  # brightness per unit of audio feature
DRIFT = 0.004  # how far each model call's random draw moves the latents


def record(entry: dict) -> None:
    LOG.append(entry)
    path = os.environ.get("LIVEAVATAR_STANDIN_LOG")
    if path:
        plain = {k: v for k, v in entry.items() if not torch.is_tensor(v)}
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(plain) + "\n")


def latents_of(video):
    """[C, T, H, W] pixels -> [STRIDE, 1 + (T - 1) // 4] latents, causal in time as Wan's VAE is
    (vae_streaming.py L519-545): the first frame alone, then groups of 4; each latent column
    holds its frames' mean levels (the first frame's repeated)."""
    levels = video.float().mean(dim=(0, 2, 3))
    cols = [levels[:1].repeat(STRIDE)]
    for k in range(1, 1 + (len(levels) - 1) // STRIDE):
        group = levels[1 + STRIDE * (k - 1):1 + STRIDE * k]
        cols.append(torch.cat([group, group[-1:].repeat(STRIDE - len(group))]))
    return torch.stack(cols, dim=1)


class _Model:
    """What vae.model is upstream (WanVAE_): it holds first_decode, set True once, at
    construction (vae_streaming.py L511), and cleared by the first stream_decode (L621-623)."""

    def __init__(self):
        self.first_decode = True


class _VAE:
    """Wan's streaming VAE, reduced to what the tests see: encode() with its cache cleared on
    every call, and a stream_decode() whose causal cache carries from call to call."""

    CARRY = 0.9  # how much of the decoder's context each latent frame keeps: it looks back several

    def __init__(self):
        self.dtype, self.device, self.inputs = torch.float32, torch.device("cpu"), []
        self.model = _Model()
        self.context = 0.0

    def encode(self, videos):
        self.inputs.append(videos if torch.is_tensor(videos) else torch.stack(list(videos)))
        items = videos if isinstance(videos, list) else list(videos)
        return [latents_of(v) for v in items]

    def stream_decode(self, zs):
        """Latents [STRIDE, T] -> per-frame levels, each latent frame shifted by half of how far
        the decoder's context (what it decoded before) is from it: a stale context shows at the
        seam. The first call after construction starts the context afresh from its first latent
        frame and decodes that one to a single frame, as upstream's first_decode does."""
        out = []
        for z in zs:
            levels, start = [], 0
            if self.model.first_decode:
                self.model.first_decode = False
                self.context, start = z[:, 0].mean().item(), 1
                levels.append(z[:1, 0])
            for k in range(start, z.shape[1]):
                col = z[:, k]
                levels.append(col + 0.5 * (self.context - col.mean().item()))
                self.context = self.CARRY * self.context + (1 - self.CARRY) * col.mean().item()
            out.append(torch.cat(levels))
        return out


def _round_up(side, multiple=64):
    return -(-side // multiple) * multiple


def read_wav(path):
    with wave.open(str(path)) as f:
        sr = f.getframerate()
        audio = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768
    return audio, sr


def audio_features(audio, sr, fps=25):
    """One feature per frame: the RMS of the audio normalised to zero mean and unit variance over
    everything it was given (as wav2vec2's processor normalises its input, audio_encoder.py
    L72-74), plus half of each neighbour's, zero past either end of the input: wav2vec2 hears
    across frames, and what it was not given it hears as nothing."""
    x = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    per = sr // fps
    n = math.ceil(len(x) / per)
    rms = np.array([np.sqrt(np.mean(x[i * per:(i + 1) * per] ** 2)) for i in range(n)], np.float32)
    padded = np.concatenate([[0.0], rms, [0.0]])
    return padded[1:-1] + 0.5 * (padded[:-2] + padded[2:])


class WanS2V:
    REF_REPEAT = 5  # this pipeline encodes the reference as 5 frames, so motion is 5 x motion_frames long

    def __init__(
        self,
        config,
        checkpoint_dir,
        device_id=0,
        rank=0,
        t5_fsdp=False,
        dit_fsdp=False,
        use_sp=False,
        sp_size=None,
        t5_cpu=False,
        init_on_cpu=True,
        drop_part_motion_frames=0.3,
        convert_model_dtype=False,
        is_training=False,
        single_gpu=False,
        offload_kv_cache=False,
    ):
        self.config, self.checkpoint_dir, self.rank, self.single_gpu = config, checkpoint_dir, rank, single_gpu
        self.motion_frames = config.transformer.motion_frames
        self.fps = config.sample_fps
        self.vae = _VAE()
        self.noise_model = torch.nn.Linear(4, 4)
        self.lora = None
        self.kv_cache1 = None

    def add_lora_to_model(self, model, lora_rank=4, lora_alpha=4, lora_target_modules="q,k,v,o,ffn.0,ffn.2",
                          init_lora_weights="kaiming", pretrained_lora_path=None, state_dict_converter=None,
                          load_only=False, load_lora_weight_only=False):
        self.lora = {"rank": lora_rank, "alpha": lora_alpha, "path": pretrained_lora_path}
        return model

    def get_size_less_than_area(self, height, width, target_area=1024 * 704, divisor=64):
        """LiveAvatar's rule, restated: the largest of 100 evenly spaced scales whose sides,
        each rounded up to a multiple of 64, fit in target_area. An image that already fits
        tries 1.0 down to 0.1; a larger one tries from the scale that exactly fills the area
        down to the one at which rounding up could add divisor - 1 to both sides."""
        area = height * width
        if area <= target_area:
            high, low = 1.0, 0.1
        else:
            pad = divisor - 1
            # LiveAvatar solves this quadratic with 2ac under the root where the textbook has 4ac.
            b, c = pad * (height + width), pad * pad - target_area
            high = math.sqrt(target_area / area)
            low = (math.sqrt(b * b - 2 * area * c) - b) / (2 * area)
        for i in range(100):
            scale = high - (high - low) * i / 100
            h, w = _round_up(int(height * scale)), _round_up(int(width * scale))
            if h * w <= target_area:
                return h, w
        ratio = width / height
        w = int((target_area * ratio) ** 0.5 // divisor * divisor)
        h = int((target_area / ratio) ** 0.5 // divisor * divisor)
        if w >= width or h >= height:
            w, h = int(width // divisor * divisor), int(height // divisor * divisor)
        return h, w

    def get_gen_size(self, size, max_area, ref_image_path, pre_video_path):
        if size is not None:
            height, width = size
        else:
            width, height = Image.open(ref_image_path).size
        return self.get_size_less_than_area(height, width, target_area=max_area)

    def encode_audio(self, audio_path, infer_frames):
        """([1, 1, 1, frames] features, clips they fill): whole clips, zero past the audio, and
        one clip more than the audio fills, as upstream's bucket count is (audio_encoder.py L178)."""
        audio, sr = read_wav(audio_path)
        feats = audio_features(audio, sr, self.fps)
        clips = len(feats) // infer_frames + 1
        bucket = np.zeros(clips * infer_frames, np.float32)
        bucket[:len(feats)] = feats
        return torch.from_numpy(bucket).view(1, 1, 1, -1), clips

    def _reference(self, path, height, width):
        """The reference as LiveAvatar frames it: its short side scaled to the shorter target
        side, then the centre cut to height x width (padded with black where it falls short)."""
        image = Image.open(path).convert("RGB")
        short = min(height, width)
        scale = short / min(image.size)
        image = image.resize((max(short, round(image.width * scale)), max(short, round(image.height * scale))), Image.BILINEAR)
        left, top = round((image.width - width) / 2), round((image.height - height) / 2)
        image = image.crop((left, top, left + width, top + height))
        return np.asarray(image, np.float32) / 127.5 - 1.0

    def _forward(self, block, targets, draws):
        """One call of the model: a step towards the targets, moved by its unseeded random draw
        (causal_model_s2v.py L1139-1140, in every forward, on every rank)."""
        relative_dist = random.randint(4, 30)
        draws.append(relative_dist)
        return 0.25 * block + 0.75 * targets + DRIFT * (relative_dist - 17)

    def _prefill(self, motion_latents, draws):
        """The KV cache of this call, from its motion latents: written by a forward of its own (the
        sink prefill, L1015-1041), which draws as every forward does."""
        draws.append(random.randint(4, 30))
        return {"tint": motion_latents.float().mean().item()}

    def _prepare(self, ref_image_path, audio_path, infer_frames, max_area, sample_solver):
        """Step 1 of generate(), on every rank: the size, the audio, the reference and motion."""
        height, width = self.get_gen_size(size=None, max_area=max_area, ref_image_path=ref_image_path, pre_video_path=None)
        audio_emb, nr = self.encode_audio(audio_path, infer_frames)
        audio, sr = read_wav(audio_path)
        ref = self._reference(ref_image_path, height, width)
        ref_pixels = torch.from_numpy(ref).permute(2, 0, 1).unsqueeze(1).unsqueeze(0)  # 1 C 1 H W
        ref_pixels = ref_pixels.repeat(1, 1, self.REF_REPEAT, 1, 1)
        self.vae.encode(ref_pixels)
        motion = ref_pixels.repeat(1, 1, self.motion_frames, 1, 1)
        # As upstream: the one-GPU pipeline keeps these pixels (a detach(), the same storage) as
        # the start of the decode context for its second clip.
        videos_last_frames = motion.detach()
        motion_latents = torch.stack(self.vae.encode(motion))
        encoded = self.vae.inputs[-1]  # what the motion encoding really received
        if sample_solver != "euler":
            raise NotImplementedError("Unsupported solver.")
        return {"size": (height, width), "ref": ref, "audio": audio_emb.flatten(), "clips": nr, "motion": motion_latents,
                "encoded": encoded, "context_mean": videos_last_frames.float().mean().item(),
                "audio_s": len(audio) / sr}

    def _targets(self, cache, features):
        """What the frames of a block are denoised towards: their audio, the motion's tint."""
        return (GAIN * features + 0.5 * cache["tint"]).view(BLOCK, STRIDE).T

    def _frames(self, ref, levels):
        n = len(levels)
        video = torch.from_numpy(ref).permute(2, 0, 1).unsqueeze(1).repeat(1, n, 1, 1)
        return (video + levels.float().view(1, n, 1, 1)).clamp(-1, 1)

    def generate(self, input_prompt=None, ref_image_path=None, audio_path=None, enable_tts=False, tts_prompt_audio=None,
                 tts_prompt_text=None, tts_text=None, num_repeat=1, pose_video=None, generate_size=None,
                 max_area=720 * 1280, infer_frames=80, shift=5.0, sample_solver="unipc", sampling_steps=40, guide_scale=5.0,
                 n_prompt="", seed=-1, offload_model=True, init_first_frame=False, use_dataset=False, dataset_sample_idx=0,
                 drop_motion_noisy=False, num_gpus_dit=1, max_repeat=1000000, enable_vae_parallel=False, mask=None,
                 input_video_for_sam2=None, enable_online_decode=False):
        p = self._prepare(ref_image_path, audio_path, infer_frames, max_area, sample_solver)
        num_repeat = min(num_repeat, p["clips"])
        lat = (infer_frames + 3 + self.motion_frames) // STRIDE - (self.motion_frames + 3) // STRIDE
        draws, clips = [], []
        self.kv_cache1 = None  # a cache per call (L935)
        for r in range(num_repeat):
            g = torch.Generator().manual_seed(seed + r)
            noise = torch.randn(STRIDE, lat, generator=g)
            if self.kv_cache1 is None:
                self.kv_cache1 = self._prefill(p["motion"], draws)
            clip = torch.zeros_like(noise)
            for b in range(lat // BLOCK):
                step = dist.get_rank()  # upstream sets its sampler's step from the rank at every block
                block = noise[:, b * BLOCK:(b + 1) * BLOCK]
                first = r * infer_frames + b * BLOCK * STRIDE
                targets = self._targets(self.kv_cache1, p["audio"][first:first + BLOCK * STRIDE])
                for _ in range(sampling_steps):
                    block = self._forward(block, targets, draws)
                clip[:, b * BLOCK:(b + 1) * BLOCK] = block
            clips.append(clip.T.reshape(-1))  # a clip's frames in order
        levels = torch.cat(clips)[3:]  # the first clip's first 3 decoded frames are dropped (L1170)
        video = self._frames(p["ref"], levels)
        record({"num_repeat": num_repeat, "infer_frames": infer_frames, "sampling_steps": sampling_steps,
                "guide_scale": guide_scale, "solver": sample_solver, "motion_mean": p["encoded"].float().mean().item(),
                "motion_t": p["encoded"].shape[2], "size": p["size"], "max_area": max_area, "offload": offload_model,
                "audio_s": p["audio_s"], "features": p["audio"][:num_repeat * infer_frames].tolist(), "step": step,
                "draws": draws, "rank": dist.get_rank(), "video": video.clone(), "context_mean": p["context_mean"]})
        return (video if self.rank == 0 else None), {}
