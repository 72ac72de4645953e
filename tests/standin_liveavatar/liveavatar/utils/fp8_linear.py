CALLS = []


def replace_linear_with_scaled_fp8(model, ignore_keys=None):
    CALLS.append(list(ignore_keys or []))
    model.fp8 = True
    return model
