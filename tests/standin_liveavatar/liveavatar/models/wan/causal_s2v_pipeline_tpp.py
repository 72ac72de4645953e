"""Stand-in for LiveAvatar's TPP pipeline: the single-GPU stand-in with what TPP does differently.

The reference is encoded as one frame, so the motion frames are motion_frames long, not
5 x motion_frames; generate() defaults to num_gpus_dit=4; and the video comes back only on
the decoding rank, num_gpus_dit - 1 + int(enable_vae_parallel), after a barrier every rank
reaches. The other ranks get None.
"""

import torch.distributed as dist

from liveavatar.models.wan import causal_s2v_pipeline as _single
from liveavatar.models.wan.causal_s2v_pipeline import LOG  # noqa: F401  - the tests read it here too


class WanS2V(_single.WanS2V):
    REF_REPEAT = 1

    def _output(self, video, num_gpus_dit, enable_vae_parallel):
        dist.barrier()
        return video if dist.get_rank() == num_gpus_dit - 1 + int(enable_vae_parallel) else None

    def generate(self, input_prompt=None, ref_image_path=None, audio_path=None, enable_tts=False, tts_prompt_audio=None,
                 tts_prompt_text=None, tts_text=None, num_repeat=1, pose_video=None, generate_size=None,
                 max_area=720 * 1280, infer_frames=80, shift=5.0, sample_solver="unipc", sampling_steps=40, guide_scale=5.0,
                 n_prompt="", seed=-1, offload_model=True, init_first_frame=False, use_dataset=False, dataset_sample_idx=0,
                 drop_motion_noisy=False, num_gpus_dit=4, max_repeat=1000000, enable_vae_parallel=False, mask=None,
                 input_video_for_sam2=None, enable_online_decode=False):
        return self._generate(ref_image_path, audio_path, num_repeat, max_area, infer_frames, sample_solver, sampling_steps,
                              guide_scale, offload_model, num_gpus_dit, enable_vae_parallel)
