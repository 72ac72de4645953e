"""Stand-in WanS2V: LiveAvatar's constructor and generate() signature over a tiny CPU model.

Each frame is the reference image, brightened by the audio level of its 1/25 s and
shifted towards the mean of the motion frames that generate() encoded, so a test can
see both the speech and what the motion frames were seeded with. Like LiveAvatar, it
returns num_repeat * infer_frames - 3 frames: the first clip's first 3 are dropped.

Also like LiveAvatar, it ignores generate_size: the frame size is the reference image's
own, scaled under max_area and rounded up to multiples of 64 (get_gen_size); it asks
torch.distributed for the rank, so it needs a process group even alone; and it samples
only with the euler solver.
"""

import math
import wave

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

LOG = []  # one dict per generate() call, for the tests


class _VAE:
    def __init__(self):
        self.dtype, self.device, self.inputs = torch.float32, torch.device("cpu"), []

    def encode(self, videos):
        self.inputs.append(videos if torch.is_tensor(videos) else torch.stack(list(videos)))
        items = videos if isinstance(videos, list) else list(videos)
        return [v.mean(dim=(-1, -2)) for v in items]


def _round_up(side, multiple=64):
    return -(-side // multiple) * multiple


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
        self.vae = _VAE()
        self.noise_model = torch.nn.Linear(4, 4)
        self.lora = None

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

    def _output(self, video, num_gpus_dit, enable_vae_parallel):
        return video if self.rank == 0 else None

    def generate(self, input_prompt=None, ref_image_path=None, audio_path=None, enable_tts=False, tts_prompt_audio=None,
                 tts_prompt_text=None, tts_text=None, num_repeat=1, pose_video=None, generate_size=None,
                 max_area=720 * 1280, infer_frames=80, shift=5.0, sample_solver="unipc", sampling_steps=40, guide_scale=5.0,
                 n_prompt="", seed=-1, offload_model=True, init_first_frame=False, use_dataset=False, dataset_sample_idx=0,
                 drop_motion_noisy=False, num_gpus_dit=1, max_repeat=1000000, enable_vae_parallel=False, mask=None,
                 input_video_for_sam2=None, enable_online_decode=False):
        return self._generate(ref_image_path, audio_path, num_repeat, max_area, infer_frames, sample_solver, sampling_steps,
                              guide_scale, offload_model, num_gpus_dit, enable_vae_parallel)

    def _generate(self, ref_image_path, audio_path, num_repeat, max_area, infer_frames, sample_solver, sampling_steps,
                  guide_scale, offload_model, num_gpus_dit, enable_vae_parallel):
        height, width = self.get_gen_size(size=None, max_area=max_area, ref_image_path=ref_image_path, pre_video_path=None)
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
        with wave.open(audio_path) as f:
            sr = f.getframerate()
            audio = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768
        n = num_repeat * infer_frames
        per = sr // 25
        level = np.array([np.sqrt(np.mean(audio[i * per:(i + 1) * per] ** 2)) if i * per < len(audio) else 0.0 for i in range(n)])
        tint = motion_latents.mean().item()
        # LiveAvatar sets its sampler's step from the rank at every block, in both modes, so
        # a process without a torch.distributed group fails here as it does there.
        step = dist.get_rank()
        video = torch.from_numpy(ref).permute(2, 0, 1).unsqueeze(1).repeat(1, n, 1, 1)
        video = (video + torch.from_numpy(level).float().view(1, n, 1, 1) * 2 + 0.5 * tint).clamp(-1, 1)
        # LiveAvatar cuts the first 3 decoded frames of the first clip, so it returns n - 3
        # frames and returned frame k shows audio frame k + 3.
        video = video[:, 3:]
        LOG.append({"num_repeat": num_repeat, "infer_frames": infer_frames, "sampling_steps": sampling_steps,
                    "guide_scale": guide_scale, "solver": sample_solver, "motion_mean": encoded.float().mean().item(),
                    "motion_t": encoded.shape[2], "size": (height, width), "max_area": max_area, "offload": offload_model,
                    "audio_s": len(audio) / sr, "step": step, "video": video.clone(),
                    "context_mean": videos_last_frames.float().mean().item()})
        return self._output(video, num_gpus_dit, enable_vae_parallel), {}
