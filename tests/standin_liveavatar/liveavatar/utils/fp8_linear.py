CALLS = []


def replace_linear_with_scaled_fp8(module, ignore_keys=[], quantize_weight=True):  # noqa: B006 - LiveAvatar's signature
    CALLS.append(list(ignore_keys))
    module.fp8 = True
    return module
