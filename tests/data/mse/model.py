import numpy as np


def mean_squared_error(knobs, args):
    errors = np.asarray(args[0], float) - np.asarray(args[1], float)
    if knobs.get("absolute"):
        errors = np.abs(errors)
    else:
        errors = errors ** 2
    if knobs.get("reduce") == "sum":
        return np.float64(errors.sum())
    return np.float64(errors.mean())
