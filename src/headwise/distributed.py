"""The one distributed path: every process-aware part of headwise asks here who it is and how to train.

Run under `accelerate launch` (DDP, FSDP 2, DeepSpeed) or as a plain single process, the same code
runs: `process_state()` says which process this is, `accelerator()` builds the `Accelerator` that
training always goes through (one process included), with gradient accumulation set on it, and
`shards_parameters()` says whether each process holds only a shard of the weights.

On a machine without CUDA the processes talk over gloo: launch them with
`accelerate launch --multi_gpu --num_processes N` (accelerate's `--cpu` flag starts only one
process unless MPI is set up).
"""

from __future__ import annotations

from headwise.errors import HeadwiseError


def process_state():
    """This process's rank and the world size under `accelerate launch` (a single process otherwise)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def accelerator(grad_accum: int = 1):
    """The `Accelerator` a training loop goes through: DDP, FSDP 2 or DeepSpeed as launched, or one process.

    Gradient accumulation is the Accelerator's: `accumulate()` decides when gradients sync and the optimizer
    steps, and `backward()` divides the loss by `grad_accum`.
    """
    import torch
    from accelerate import Accelerator

    # One process keeps the model where the caller put it (--device); several put each replica on their own
    # device, as `accelerate launch` expects.
    placement = process_state().num_processes > 1
    return Accelerator(cpu=not torch.cuda.is_available(), gradient_accumulation_plugin=_accumulation(grad_accum),
                       device_placement=placement)


def _accumulation(grad_accum: int):
    """Accumulate over `grad_accum` micro-steps; sync_with_dataloader: a training loop marks its last micro-step
    (`micro_steps`), where the optimizer steps whatever the count, as at the end of a dataloader."""
    from accelerate.utils import GradientAccumulationPlugin

    return GradientAccumulationPlugin(num_steps=grad_accum, sync_with_dataloader=True)


def shards_parameters(acc, grad_accum: int = 1) -> bool:
    """Whether each process holds only a shard of the weights; refuses set-ups a head-level trainer cannot follow.

    Under DDP every process holds the whole model, so passes that only produce files run on the main process
    alone. Under FSDP 2 and DeepSpeed ZeRO-3 a forward pass gathers the shards from every process, so every
    process must run those passes, in step.
    """
    from accelerate.utils import DistributedType

    kind = acc.distributed_type
    if kind == DistributedType.FSDP:
        if getattr(acc.state.fsdp_plugin, "fsdp_version", 1) != 2:
            # FSDP 1 wraps modules, so the head hooks and generate() would bypass its parameter gathering.
            raise HeadwiseError("headwise needs FSDP version 2; launch with `accelerate launch --use_fsdp "
                                "--fsdp_version 2 ...` (or set fsdp_version: 2 in the accelerate config).")
        return True
    if kind == DistributedType.DEEPSPEED:
        if grad_accum > 1:
            raise HeadwiseError("under DeepSpeed set gradient accumulation in the DeepSpeed config "
                                "(gradient_accumulation_steps) and leave --grad-accum at 1.")
        return acc.state.deepspeed_plugin.zero_stage == 3
    return False


def micro_steps(items: list, grad_accum: int):
    """The micro-steps of one stretch of training (say one task), in order, for `Accelerator.accumulate`.

    Accelerate syncs gradients every `grad_accum` micro-steps and, as at the end of a dataloader, at the last
    one, so a stretch whose length is not a multiple of `grad_accum` still ends with an optimizer step. The
    returned iterable plays the dataloader's part for that (accelerate's DataLoaderStateMixin protocol). It
    sets the accumulation count again, since accelerate keeps one for the whole process and another
    Accelerator made since (another run in the same process) may have changed it.
    """
    from accelerate.data_loader import DataLoaderStateMixin
    from accelerate.state import GradientState

    class MicroSteps(DataLoaderStateMixin):
        def __init__(self):
            self.gradient_state = GradientState(_accumulation(grad_accum))
            self._drop_last = True  # read by begin(): no padded remainder to report

        def __len__(self) -> int:
            return len(items)

        def __iter__(self):
            self.begin()
            try:
                for i, item in enumerate(items):
                    self.end_of_dataloader = i == len(items) - 1
                    yield item
            finally:
                self.end()

    return MicroSteps()
