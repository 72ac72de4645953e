from types import SimpleNamespace

WAN_CONFIGS = {"s2v-14B": SimpleNamespace(transformer=SimpleNamespace(motion_frames=9), param_dtype="float32")}
SIZE_CONFIGS = {"704*384": (704, 384), "64*48": (64, 48)}
