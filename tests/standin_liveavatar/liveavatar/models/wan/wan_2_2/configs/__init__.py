from types import SimpleNamespace

# motion_frames as in LiveAvatar's wan_s2v_14B_modified.py; the rest is what the stand-in reads.
WAN_CONFIGS = {"s2v-14B": SimpleNamespace(transformer=SimpleNamespace(motion_frames=73), param_dtype="float32", sample_fps=25)}
SIZE_CONFIGS = {"704*384": (704, 384), "720*400": (720, 400)}
