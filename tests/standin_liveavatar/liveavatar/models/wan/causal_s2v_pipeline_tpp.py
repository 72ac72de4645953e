"""Stand-in for LiveAvatar's TPP pipeline: the one-GPU stand-in, run as upstream's five ranks.

What it keeps of upstream (causal_s2v_pipeline_tpp.py at 9c2c38d), with the lines it restates:
- the reference is encoded as one frame, so the motion frames are motion_frames long (L892-898);
- every rank prepares the call (size, audio, reference, motion: Step 1), and the DiT ranks
  each make their KV cache anew in every generate() call (L937, L963-971), the decoding rank none;
- denoising step i runs on rank i alone: rank 0 starts each block from the clip's seeded
  noise, each DiT rank receives the block from the rank before it, runs its one step (a
  model call, with its unseeded random draw) and sends the block on (L1061-1093);
- the decoding rank, num_gpus_dit - 1 + int(enable_vae_parallel), receives each block from
  the last DiT rank (L1096-1098) and decodes it block by block with the streaming decoder
  (L1118-1124), which it primes, before the first block of the call, with the oldest 7 motion
  latents, motion_latents[:, :, :7] (L1119-1121); it keeps the last infer_frames / blocks
  frames of each block and drops 3 of the first (L1125-1128);
- the video comes back only on the decoding rank, after a barrier every rank reaches
  (L1135-1148); the other ranks get None. generate() defaults to num_gpus_dit=4.
"""

import torch
import torch.distributed as dist

from liveavatar.models.wan import causal_s2v_pipeline as _single
from liveavatar.models.wan.causal_s2v_pipeline import LOG  # noqa: F401  - the tests read it here too
from liveavatar.models.wan.causal_s2v_pipeline import BLOCK, STRIDE, record

PRIMING = 7  # latent frames the decoder is primed with


class WanS2V(_single.WanS2V):
    REF_REPEAT = 1

    def generate(self, input_prompt=None, ref_image_path=None, audio_path=None, enable_tts=False, tts_prompt_audio=None,
                 tts_prompt_text=None, tts_text=None, num_repeat=1, pose_video=None, generate_size=None,
                 max_area=720 * 1280, infer_frames=80, shift=5.0, sample_solver="unipc", sampling_steps=40, guide_scale=5.0,
                 n_prompt="", seed=-1, offload_model=True, init_first_frame=False, use_dataset=False, dataset_sample_idx=0,
                 drop_motion_noisy=False, num_gpus_dit=4, max_repeat=1000000, enable_vae_parallel=False, mask=None,
                 input_video_for_sam2=None, enable_online_decode=False):
        p = self._prepare(ref_image_path, audio_path, infer_frames, max_area, sample_solver)
        num_repeat = min(num_repeat, p["clips"])
        rank = dist.get_rank()
        decoder = num_gpus_dit - 1 + int(enable_vae_parallel)
        dit = rank < num_gpus_dit
        lat = (infer_frames + 3 + self.motion_frames) // STRIDE - (self.motion_frames + 3) // STRIDE
        blocks = lat // BLOCK
        dist.barrier()  # every rank prepared (L929)
        draws, out, primed = [], [], None
        self.kv_cache1 = None  # a cache per call (L937)
        for r in range(num_repeat):
            if r == 0 or dit:
                g = torch.Generator().manual_seed(seed + r)
                noise = torch.randn(STRIDE, lat, generator=g)
                if self.kv_cache1 is None and dit:
                    self.kv_cache1 = self._prefill(p["motion"], draws)
            for b in range(blocks):
                block = noise[:, b * BLOCK:(b + 1) * BLOCK]
                first = r * infer_frames + b * BLOCK * STRIDE
                for i in range(sampling_steps):
                    if i != rank:
                        continue
                    if rank > 0:
                        block = torch.empty(STRIDE, BLOCK)
                        dist.recv(block, rank - 1)
                    block = self._forward(block, self._targets(self.kv_cache1, p["audio"][first:first + BLOCK * STRIDE]), draws)
                    if rank != decoder:
                        dist.send(block.contiguous(), rank + 1)
                if enable_vae_parallel and rank == decoder:
                    block = torch.empty(STRIDE, BLOCK)
                    dist.recv(block, rank - 1)
                    if r == 0 and b == 0:
                        self.vae.stream_decode(p["motion"][:, :, :PRIMING])
                        primed = self.vae.context
                    levels = torch.stack(self.vae.stream_decode(block.unsqueeze(0)))[0]
                    levels = levels[-(infer_frames // blocks):]
                    out.append(levels[3:] if r == 0 and b == 0 else levels)
        dist.barrier()
        video = self._frames(p["ref"], torch.cat(out)) if rank == decoder else None
        record({"num_repeat": num_repeat, "infer_frames": infer_frames, "sampling_steps": sampling_steps,
                "solver": sample_solver, "motion_mean": p["encoded"].float().mean().item(), "motion_t": p["encoded"].shape[2],
                "motion_latents": p["motion"][0].mean(dim=0).tolist(), "size": p["size"], "max_area": max_area,
                "audio_s": p["audio_s"], "features": p["audio"][:num_repeat * infer_frames].tolist(), "rank": rank,
                "draws": draws, "primed_context": primed, "seed": seed,
                **({"video": video.clone(), "levels": torch.cat(out).tolist()} if video is not None else {})})
        return video, {}
