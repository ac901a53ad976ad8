"""The one distributed path: every process-aware part of headwise asks here who it is and how to train.

Run under `accelerate launch` (DDP, FSDP 2, DeepSpeed) or as a plain single process, the same code
runs: `process_state()` says which process this is, `accelerator()` builds the `Accelerator` that
training always goes through (one process included), with gradient accumulation set on it, and
`shards_parameters()` says whether each process holds only a shard of the weights.

On a machine without CUDA the processes talk over gloo: launch them with
`accelerate launch --multi_gpu --num_processes N` (accelerate's `--cpu` flag starts only one
process unless MPI is set up). `accelerate launch --use_fsdp --fsdp_version 2` on such a machine
gets no FSDP from Accelerate (its state turns the request into plain DDP over gloo), so headwise
shards the model itself there with torch's `fully_shard` over the gloo group (`prepare`). A launch
that Accelerate would run otherwise than asked (several processes that each train alone, DeepSpeed
without a GPU) is refused by `check_launch` before anything is written.
"""

from __future__ import annotations

import os

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


# FSDP 1 wraps modules, so the head hooks and generate() would bypass its parameter gathering.
FSDP1 = ("headwise needs FSDP version 2; launch with `accelerate launch --use_fsdp --fsdp_version 2 ...` (or set "
         "fsdp_version: 2 in the accelerate config).")


def _int_env(name: str) -> int:
    try:
        return int(os.environ.get(name, "1"))
    except ValueError:
        raise HeadwiseError(f"the environment variable {name} must be a whole number, got "
                            f"{os.environ[name]!r}.") from None


def _asked(name: str) -> bool:
    """Whether `accelerate launch` asked for a distributed engine (it says so in the environment)."""
    return os.environ.get(f"ACCELERATE_USE_{name}", "false").lower() == "true"


def check_launch() -> None:
    """Refuse, with one sentence, a launch that would not run as asked: call it before writing anything.

    - several processes launched (WORLD_SIZE > 1) that Accelerate runs each alone would train one full copy each;
    - FSDP version 1 wraps modules, so the head hooks and generate() would bypass its parameter gathering;
    - DeepSpeed that Accelerate does not set up (it runs DeepSpeed only with an accelerator: on CPU its state
      ignores ACCELERATE_USE_DEEPSPEED) would silently train as DDP.

    Accumulation under DeepSpeed is not refused: Accelerate fills the DeepSpeed config's "auto"
    gradient_accumulation_steps from --grad-accum, and where the config names its own, uses that (with a
    warning); the trainer reads the count back from the Accelerator.
    """
    from accelerate.utils import DistributedType

    state = process_state()
    # A launcher (torchrun, accelerate, deepspeed) sets LOCAL_RANK with WORLD_SIZE; WORLD_SIZE alone may be an
    # orchestrator's, for a job this process is only a part of.
    launched = _int_env("WORLD_SIZE") if "LOCAL_RANK" in os.environ else 1
    if launched > 1 and state.num_processes == 1:
        raise HeadwiseError(f"{launched} processes were launched but Accelerate runs this one alone (distributed type "
                            f"{state.distributed_type.value}), so each would train its own copy; launch with "
                            "`accelerate launch --multi_gpu --num_processes N` (gloo on CPU) or one process.")
    if _asked("FSDP") and os.environ.get("FSDP_VERSION", "1") != "2":
        raise HeadwiseError(FSDP1)
    if _asked("DEEPSPEED"):
        if state.distributed_type != DistributedType.DEEPSPEED:
            raise HeadwiseError("DeepSpeed was asked for but Accelerate set up "
                                f"{state.distributed_type.value} instead (it runs DeepSpeed only on GPUs), so this "
                                "would train without it; on CPU use `--use_fsdp --fsdp_version 2` or `--multi_gpu`.")


def torch_fsdp2(acc) -> bool:
    """Whether FSDP 2 was asked for where Accelerate gives plain DDP (CPU, gloo): headwise then shards itself."""
    from accelerate.utils import DistributedType

    return _asked("FSDP") and acc.distributed_type == DistributedType.MULTI_CPU


def shards_parameters(acc) -> bool:
    """Whether each process holds only a shard of the weights; refuses set-ups a head-level trainer cannot follow.

    Under DDP every process holds the whole model, so passes that only produce files run on the main process
    alone. Under FSDP 2 and DeepSpeed ZeRO-3 a forward pass gathers the shards from every process, so every
    process must run those passes, in step.
    """
    from accelerate.utils import DistributedType

    check_launch()
    kind = acc.distributed_type
    if kind == DistributedType.FSDP:
        if getattr(acc.state.fsdp_plugin, "fsdp_version", 1) != 2:
            raise HeadwiseError(FSDP1)
        return True
    if kind == DistributedType.DEEPSPEED:
        return acc.state.deepspeed_plugin.zero_stage == 3
    return torch_fsdp2(acc)


def prepare(acc, model, layers, optimizer, root=None):
    """(sharded, the model to train, the optimizer) for a training loop, through `acc`.

    `layers`: the model's decoder layers, each a unit of sharding; `optimizer`: builds the optimizer from a list
    of parameters (after sharding, which replaces them); `root`: the module whose calls gather the rest of the
    weights (the transformers model under PEFT adapters, which the evaluation and teacher passes call directly;
    default `model`). Accelerate prepares both, except where FSDP 2 was asked for on CPU: there torch's
    `fully_shard` shards each layer and then the root over the gloo group (what Accelerate's FSDP 2 does on
    GPUs), and only the optimizer goes through Accelerate, so that accumulation, clipping and the optimizer's
    step still do.
    """
    sharded = shards_parameters(acc)
    if torch_fsdp2(acc):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (acc.num_processes,))
        for layer in layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model if root is None else root, mesh=mesh)
    opt = optimizer([p for p in model.parameters() if p.requires_grad])
    if torch_fsdp2(acc):
        return sharded, model, acc.prepare(opt)
    return sharded, *acc.prepare(model, opt)


def gradient_sync(acc, root) -> None:
    """Inside `Accelerator.accumulate`: where headwise sharded the model itself, reduce its gradients only on the
    micro-steps where they sync (Accelerate's `no_sync` knows only its own wrappers), as DDP's no_sync does."""
    if torch_fsdp2(acc):
        root.set_requires_gradient_sync(acc.sync_gradients)


def save_sharded(acc, model, opt, directory) -> None:
    """Every process writes its shard of the model and the optimizer into `directory`: torch's distributed
    checkpoint where headwise sharded the model itself, `Accelerator.save_state` otherwise."""
    if torch_fsdp2(acc):
        import torch.distributed.checkpoint as dcp

        dcp.save(_state_dicts(model, opt), checkpoint_id=str(directory))
    else:
        acc.save_state(str(directory))


def load_sharded(acc, model, opt, directory) -> None:
    """Read back what `save_sharded` wrote, each process its own shard."""
    if torch_fsdp2(acc):
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_state_dict

        state = _state_dicts(model, opt)
        dcp.load(state, checkpoint_id=str(directory))
        set_state_dict(model, opt.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    else:
        acc.load_state(str(directory))


def _state_dicts(model, opt) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, opt.optimizer)
    return {"model": model_state, "optim": optim_state}


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
