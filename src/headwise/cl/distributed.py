"""What the continual trainer must do differently when Accelerate splits the model over processes.

Under DDP every process holds the whole model, so the passes that only produce files (teacher
signals, importance, evaluation) run on the main process alone. Under FSDP (version 2) and
DeepSpeed ZeRO-3 each process holds a shard and a forward pass gathers the rest from the others,
so every process must run those passes, in step; only the main one writes. Their checkpoints go
through `Accelerator.save_state`, which knows how to save and restore shards and optimizer state.
"""

from __future__ import annotations

from headwise.errors import HeadwiseError


def shards_parameters(accelerator, grad_accum: int = 1) -> bool:
    """Whether each process holds only a shard of the weights; refuses set-ups the trainer cannot follow."""
    if accelerator is None:
        return False
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        if getattr(accelerator.state.fsdp_plugin, "fsdp_version", 1) != 2:
            # FSDP 1 wraps modules, so the head hooks and generate() would bypass its parameter gathering.
            raise HeadwiseError("headwise cl needs FSDP version 2; launch with `accelerate launch --use_fsdp "
                                "--fsdp_version 2 ...` (or set fsdp_version: 2 in the accelerate config).")
        return True
    if kind == DistributedType.DEEPSPEED:
        if grad_accum > 1:
            raise HeadwiseError("under DeepSpeed set gradient accumulation in the DeepSpeed config "
                                "(gradient_accumulation_steps) and leave --grad-accum at 1.")
        return accelerator.state.deepspeed_plugin.zero_stage == 3
    return False
