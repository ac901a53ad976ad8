"""A stand-in for `cl run` that worker processes can import by name: this module imports nothing from the tests,
so unpickling it in a spawned worker does not depend on which conftest comes first on sys.path."""


def fake_cell(run_dir, cfg):
    """A picklable stand-in for `cl run` (worker processes import it by name)."""
    import os

    import torch

    bwt = {"seqft": -0.4, "seekr": -0.1}[cfg.method]
    return {"op": 0.5 + 0.1 * cfg.seed, "bwt": bwt, "bwt_paper": bwt * 0.8, "fwt": 0.0,
            "timing": {"a": {"seconds": float(torch.get_num_threads())}}, "pid": os.getpid()}
