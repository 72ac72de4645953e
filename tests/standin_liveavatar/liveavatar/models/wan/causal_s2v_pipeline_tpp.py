from liveavatar.models.wan.causal_s2v_pipeline import LOG, WanS2V  # noqa: F401  - same stand-in for the TPP path
