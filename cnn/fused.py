"""Horizontal fusion: K trials of the notebook's CNN trained at once as one network.

As in HFTA (Wang et al., MLSys 2021): K copies of a model that is too small to fill an
accelerator become one wider network. Every convolution becomes a grouped convolution
(``groups=K``, member k owns channels ``[k*c, (k+1)*c)``), every BatchNorm one BatchNorm over
K*c channels (per-channel statistics, so exactly per member), and the classifier a batched
matmul over (K, B, 2048). Each member keeps what makes it a trial of its own: initial
weights, batch order, augmentation draws, activation, loss, learning rate, BatchNorm
statistics and optimiser state. Member k's history is therefore that of
``train(configs[k], data)`` up to floating-point summation order.

While members train together their parameters live in stacked (K, ...) tensors, one per
parameter of the CNN (14 in all), and :class:`FusedOptimizer` updates all of them in one
vectorised Adam or SGD step with each member's learning rate as an element of a (K,) tensor,
as HFTA's fused optimisers do. So the number of operators of a training step does not grow
with K: autograd sees 14 leaves, the optimiser runs a fixed number of ``torch._foreach_*``
calls (the step count and bias corrections are device tensors, so the step can be captured),
the forward pass no list over members (a few whole-tensor operators per distinct activation
and per distinct loss, selected per channel or per member by masks), and the augmentation of
all members is drawn once per epoch (one host call per member) and applied in one pass. A member that leaves
(diverged, stopped by ``on_epoch``, or done) is written back into its own plain
:class:`cnn.model.CNN`, with its BatchNorm statistics and a ``torch.optim`` optimiser holding
its state; the others go on as a narrower stack.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cnn import compiling
from cnn.augment import crop_flip, decode, draw, draw_codes, to_device
from cnn.data import Data, normalize
from cnn.layers import auto_memory_format
from cnn.model import CNN
from cnn.registry import lookup
from cnn.train import OPTIMIZERS, EpochRow, Scores, TrainConfig, TrainResult, _autocast, bind_device, evaluate, order_fingerprint, setup

# Fields that decide the shape of the shared computation: fused trials must agree on them.
SHARED_FIELDS = ("epochs", "batch_size", "optimizer", "augment", "device", "precision", "eval_batch_size", "compile_mode")

# train_many's memory_format: the fused network's activation layout. Grouped convolutions in channels_last may hit
# slow cuDNN kernels on some GPUs, so both can be measured (cnn.bench --memory-format, scripts/gpu_check.py).
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}

# Elements of the largest activation of one fused evaluation pass (layer 1's conv output, (B, K*32, 32, 32)):
# at most 2^30, half of what 32-bit indexing in some kernels allows, so the evaluation batch shrinks as K grows.
MAX_EVAL_ELEMENTS = 2**30

_CONVS = ("layer1.0", "layer2.0", "layer3.0")  # CNN's Conv-BatchNorm-activation-MaxPool blocks: conv, then norm
_NORMS = ("layer1.1", "layer2.1", "layer3.1")


def _key(name: str) -> str:
    return name.replace(".", "_")  # ParameterDict keys may not contain dots


def _distinct(activations: list[nn.Module]) -> tuple[list[nn.Module], torch.Tensor]:
    # The distinct activations (compared by repr, so arguments count) in order of first use, and each member's: (K,) int64.
    names = [repr(a) for a in activations]
    order = list(dict.fromkeys(names))
    return [activations[names.index(n)] for n in order], torch.tensor([order.index(n) for n in names])


class FusedCNN(nn.Module):
    """K plain :class:`CNN` models computed as one network with stacked parameters.

    Every parameter ``name`` of :class:`CNN` becomes one (K, *shape) parameter,
    ``stacked[_key(name)]``, whose slice k is member k's; the BatchNorm running statistics are
    (K, c) buffers. The members' own models are not touched until :meth:`export`. Each distinct
    activation is one call over all channels, kept by a per-channel mask (no split per member).

    Input: member k's images in channels ``[3k, 3k+3)``, (B, K*3, H, W), or one batch that
    all members see, (B, 3, H, W). Output: logits (K, B, C).
    """

    def __init__(self, models: list[CNN], memory_format: torch.memory_format = torch.channels_last):
        super().__init__()
        self.k = len(models)
        self.memory_format = memory_format
        self.names = [name for name, _ in models[0].named_parameters()]
        per_model = [dict(m.named_parameters()) for m in models]
        self.stacked = nn.ParameterDict(
            {_key(name): nn.Parameter(self._layout(torch.stack([p[name].detach().contiguous() for p in per_model]))) for name in self.names}
        )
        first_norm = models[0].get_submodule(_NORMS[0])
        self.momentum, self.eps = first_norm.momentum, first_norm.eps
        for i, norm in enumerate(_NORMS):
            norms = [m.get_submodule(norm) for m in models]
            self.register_buffer(f"running_mean{i}", torch.stack([bn.running_mean for bn in norms]))  # (K, c)
            self.register_buffer(f"running_var{i}", torch.stack([bn.running_var for bn in norms]))
        self.activations = [m.layer1[2] for m in models]
        self._set_masks()
        # Training-mode forwards: each adds 1 to every member's num_batches_tracked (see export). A device tensor, not a
        # Python int: an int attribute changed in forward makes torch.compile recompile every step (and breaks capture).
        self.register_buffer("batches", torch.zeros((), dtype=torch.int64, device=first_norm.running_mean.device), persistent=False)

    def _set_masks(self) -> None:
        # The members' distinct activations and, per layer width c, per distinct activation, a (1, K*c, 1, 1) bool mask:
        # channel j belongs to member j // c. Made here, not in forward: a compiled forward that made them would keep
        # tensors its CUDA graph overwrites (found on an H200 under "reduce-overhead").
        self._distinct, self._which = _distinct(self.activations)
        self._masks: dict[int, list[torch.Tensor]] = {}  # channels per member -> one mask per distinct activation
        if len(self._distinct) > 1:
            for conv in _CONVS:
                weight = self.stacked[_key(conv + ".weight")]
                channels = self._which.to(weight.device).repeat_interleave(weight.shape[1])
                self._masks[weight.shape[1]] = [(channels == a).view(1, -1, 1, 1) for a in range(len(self._distinct))]

    @property
    def steps(self) -> int:
        """Training-mode forwards so far (reads the device-side count: a sync on a GPU)."""
        return int(self.batches.item())

    def parameter_list(self) -> list[nn.Parameter]:
        """The stacked parameters in :class:`CNN`'s parameter order (``self.names``; ParameterDict sorts its keys)."""
        return [self.stacked[_key(name)] for name in self.names]

    def _layout(self, stacked: torch.Tensor) -> torch.Tensor:
        """A stacked conv weight (K, c_out, c_in, kh, kw) laid out so that its (K*c_out, ...) view is channels_last."""
        if stacked.dim() != 5 or self.memory_format != torch.channels_last:
            return stacked.contiguous()
        return stacked.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.batches.add_(1)
        p = self.stacked
        for i, (conv, norm) in enumerate(zip(_CONVS, _NORMS, strict=True)):
            weight = p[_key(conv + ".weight")]  # (K, c_out, c_in, 3, 3)
            # A batch all members share: one ungrouped conv with K*c_out filters is the K convolutions at once,
            # without repeating the input K times.
            groups = 1 if i == 0 and x.shape[1] == weight.shape[2] else self.k
            x = F.conv2d(x, weight.flatten(0, 1), p[_key(conv + ".bias")].flatten(), padding=1, groups=groups)  # (B, K*c_out, H, W)
            x = F.batch_norm(
                x,
                getattr(self, f"running_mean{i}").view(-1),  # a view: the in-place update reaches the (K, c) buffer
                getattr(self, f"running_var{i}").view(-1),
                p[_key(norm + ".weight")].flatten(),
                p[_key(norm + ".bias")].flatten(),
                self.training,
                self.momentum,
                self.eps,
            )
            x = F.max_pool2d(self._activate(x), 2)  # (B, K*c_out, H/2, W/2)
        # (B, K*128, 4, 4) -> (K, B, 2048): member k's channels flattened (c, h, w), the order CNN.forward's flatten(1) gives.
        features = x.reshape(x.shape[0], self.k, -1).transpose(0, 1)
        bias = p["fc_bias"].unsqueeze(1)  # (K, 1, C)
        return torch.baddbmm(bias, features, p["fc_weight"].transpose(1, 2))  # (K, B, C)

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        # Each distinct activation over every channel, each channel keeping its member's: a few whole-tensor operators
        # per distinct activation, none per member, no split and concatenation (and their copies).
        if len(self._distinct) == 1:
            return self._distinct[0](x)
        masks = self._masks[x.shape[1] // self.k]
        out = self._distinct[0](x)
        for activation, mask in zip(self._distinct[1:], masks[1:], strict=True):
            out = torch.where(mask, activation(x), out)
        return out

    @torch.no_grad()
    def export(self, k: int, model: CNN) -> None:
        """Write member ``k``'s weights and BatchNorm statistics (and batch count) into its own ``model``."""
        for name, param in model.named_parameters():
            param.copy_(self.stacked[_key(name)][k])
        for i, norm in enumerate(_NORMS):
            bn = model.get_submodule(norm)
            bn.running_mean.copy_(getattr(self, f"running_mean{i}")[k])
            bn.running_var.copy_(getattr(self, f"running_var{i}")[k])
            bn.num_batches_tracked += self.batches.to(bn.num_batches_tracked.device)

    @torch.no_grad()
    def keep(self, members: list[int]) -> None:
        """Narrow the network to ``members`` (positions, in order); the others' slices are gone."""
        index = torch.tensor(members, device=self.running_mean0.device)
        for key, param in list(self.stacked.items()):
            self.stacked[key] = nn.Parameter(self._layout(param.detach()[index]))
        for i in range(len(_NORMS)):
            for stat in ("running_mean", "running_var"):
                setattr(self, f"{stat}{i}", getattr(self, f"{stat}{i}")[index])
        self.activations = [self.activations[k] for k in members]
        self.k = len(members)
        self._set_masks()


class FusedOptimizer:
    """One vectorised Adam or SGD step for all K members of a :class:`FusedCNN` (HFTA's ``hfta/optim``).

    ``params`` are the stacked (K, ...) parameters; member k's learning rate is ``lr[k]``, held
    as a (K, ...) tensor per parameter so that every update is one ``torch._foreach_*`` call
    over the 14 parameters, whatever K. The update is ``torch.optim.Adam``'s (or ``SGD``'s
    with momentum) element for element, with the hyperparameters that ``OPTIMIZERS[name]``
    builds; members train together from their first step, so they share one step count.
    """

    def __init__(self, name: str, params: list[torch.Tensor], lr: list[float]):
        defaults = lookup(OPTIMIZERS, name, "optimizer")([torch.zeros(1, requires_grad=True)], 1.0).defaults
        unsupported = {key: defaults[key] for key in ("weight_decay", "amsgrad", "nesterov", "dampening", "maximize") if defaults.get(key)}
        if unsupported:
            raise NotImplementedError(f"the fused {name} optimizer has no {', '.join(f'{k}={v!r}' for k, v in unsupported.items())}")
        self.name, self.params, self.lr = name, params, list(lr)
        self.betas, self.eps, self.momentum = defaults.get("betas"), defaults.get("eps"), defaults.get("momentum", 0.0)
        # Optimiser steps taken by every member, on the parameters' device: the bias corrections are computed there from
        # it, so a step holds no Python number that changes from step to step and can be captured (CUDA graphs) as is.
        # float64 as torch.optim.Adam's Python-float bias corrections (MPS has no float64).
        step_dtype = torch.float32 if params[0].device.type == "mps" else torch.float64
        self.step_count = torch.zeros((), dtype=step_dtype, device=params[0].device)
        self.state: dict[str, list[torch.Tensor] | None] = (
            {"exp_avg": [torch.zeros_like(p) for p in params], "exp_avg_sq": [torch.zeros_like(p) for p in params]}
            if name == "adam"
            else {"momentum_buffer": None}  # SGD's buffers start as the first gradient, as torch.optim.SGD's
        )
        self._set_lr()

    @property
    def steps(self) -> int:
        """Optimiser steps taken so far (reads the device-side count: a sync on a GPU; for export, not per step)."""
        return int(self.step_count.item())

    def _set_lr(self) -> None:
        lr = torch.tensor(self.lr, dtype=self.params[0].dtype, device=self.params[0].device)
        # -lr, expanded to each parameter's shape and layout: same-shape foreach calls stay on CUDA's fast path.
        self._neg_lr = [torch.empty_like(p).copy_(-lr.view(-1, *(1,) * (p.dim() - 1)).expand_as(p)) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        self.step_count.add_(1)
        if self.name == "adam":
            beta1, beta2 = self.betas
            exp_avg, exp_avg_sq = self.state["exp_avg"], self.state["exp_avg_sq"]
            torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
            # torch.optim.Adam's bias corrections, as 0-dim tensors from the device-side count.
            bias_correction1 = 1 - torch.pow(beta1, self.step_count)
            bias_correction2_sqrt = (1 - torch.pow(beta2, self.step_count)).sqrt()
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(denom, bias_correction2_sqrt)
            torch._foreach_add_(denom, self.eps)
            update = torch._foreach_div(exp_avg, denom)
            torch._foreach_mul_(update, self._neg_lr)
            torch._foreach_div_(update, bias_correction1)
            torch._foreach_add_(self.params, update)  # param -= lr / bias_correction1 * m / denom
        else:
            buffers = self.state["momentum_buffer"]
            if buffers is None:
                self.state["momentum_buffer"] = buffers = [g.clone() for g in grads]
            else:
                torch._foreach_mul_(buffers, self.momentum)
                torch._foreach_add_(buffers, grads)
            torch._foreach_addcmul_(self.params, buffers, self._neg_lr)

    def keep(self, members: list[int], params: list[torch.Tensor]) -> None:
        """Narrow to ``members`` (positions, in order), now trained as ``params``."""
        index = torch.tensor(members, device=params[0].device)
        for key, tensors in self.state.items():
            if tensors is not None:
                self.state[key] = [torch.empty_like(p).copy_(t[index]) for t, p in zip(tensors, params, strict=True)]
        self.params, self.lr = params, [self.lr[k] for k in members]
        self._set_lr()

    def export(self, k: int, model: CNN) -> torch.optim.Optimizer:
        """A ``torch.optim`` optimiser for member ``k``'s own ``model``, holding its state: its steps would go on as here."""
        optimizer = lookup(OPTIMIZERS, self.name, "optimizer")(model.parameters(), self.lr[k])
        steps = self.steps
        for i, p in enumerate(model.parameters()):  # the order of the stacked parameters
            if self.name == "adam" and steps:
                optimizer.state[p] = {
                    "step": torch.tensor(float(steps)),
                    "exp_avg": torch.empty_like(p).copy_(self.state["exp_avg"][i][k]),
                    "exp_avg_sq": torch.empty_like(p).copy_(self.state["exp_avg_sq"][i][k]),
                }
            elif self.name == "sgd" and self.state["momentum_buffer"] is not None:
                optimizer.state[p] = {"momentum_buffer": torch.empty_like(p).copy_(self.state["momentum_buffer"][i][k])}
        return optimizer


def _flat(loss: Callable[..., torch.Tensor], **kwargs) -> Callable[..., torch.Tensor]:
    # A loss of (logits (N, C), labels (N,)) per image, as each member's batch mean: (K, B, C), (K, B) -> (K,).
    return lambda x, y, target: loss(x.flatten(0, 1), y.flatten(), reduction="none", **kwargs).view(y.shape).mean(1)


def _against_one_hot(loss: Callable[..., torch.Tensor], transform=None) -> Callable[..., torch.Tensor]:
    # A loss of (inputs, one-hot target) per element, as each member's mean over its B*C elements: -> (K,).
    return lambda x, y, target: loss(transform(x) if transform else x, target, reduction="none").mean((1, 2))


# name -> each member's batch mean of LOSSES[name] at once: float logits (K, B, C), labels (K, B) and, for the losses
# against a one-hot target, that target (K, B, C) -> (K,). The module's formula (tests/cnn_tests/test_fused.py checks
# each) as a few whole-tensor operators for any K.
PER_MEMBER_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
    "cross_entropy": _flat(F.cross_entropy),
    "label_smoothing": _flat(F.cross_entropy, label_smoothing=0.1),
    "mse": _against_one_hot(F.mse_loss),
    "mse_softmax": _against_one_hot(F.mse_loss, lambda x: x.softmax(2)),
    "bce_with_logits": _against_one_hot(F.binary_cross_entropy_with_logits),
    "multi_margin": _flat(F.multi_margin_loss),
}


def _vmapped(criterion: nn.Module) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]:
    # A loss not in the table: the module itself, vmapped over the members.
    batched = torch.vmap(criterion)
    return lambda x, y, target: batched(x, y)


ONE_HOT_LOSSES = frozenset({"mse", "mse_softmax", "bce_with_logits"})  # those whose target is the one-hot labels


class _MemberLosses:
    """Each member's own loss: float logits (K, B, C) and labels (K, B) -> (K,) batch means.

    Each distinct loss is computed for every member at once (:data:`PER_MEMBER_LOSSES`, or a
    vmapped call of the module for a loss not listed there) and each member keeps its own by a
    (K,) mask: a few operators per distinct loss, none per member, no indexing or concatenation.
    The one-hot target is made once for all the losses that need it.
    """

    def __init__(self, names: list[str], criteria: list[nn.Module], device: torch.device):
        distinct = list(dict.fromkeys(names))
        which = torch.tensor([distinct.index(name) for name in names], device=device)
        self.losses = [PER_MEMBER_LOSSES.get(name) or _vmapped(criteria[names.index(name)]) for name in distinct]
        self.masks = [which == a for a in range(len(distinct))]  # (K,) bool per distinct loss
        self.one_hot = bool(ONE_HOT_LOSSES & set(distinct))

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = F.one_hot(labels, logits.shape[-1]).to(logits.dtype) if self.one_hot else None  # (K, B, C)
        out = self.losses[0](logits, labels, target)
        for loss, mask in zip(self.losses[1:], self.masks[1:], strict=True):
            # where's backward gives the other members' rows of this loss a zero gradient: only each member's own counts.
            out = torch.where(mask, loss(logits, labels, target), out)
        return out


@dataclass(eq=False)  # members are told apart by identity
class Member:
    """One trial inside a fused run."""

    index: int  # position in train_many's configs
    config: TrainConfig
    model: CNN  # the member's own model: its initial weights, and its trained ones once it has left the fused network
    criterion: nn.Module
    generator: torch.Generator  # the member's shuffling and augmentation, as setup() seeds it
    history: list[EpochRow] = field(default_factory=list)
    confusion: torch.Tensor | None = None  # test confusion (C, C) after the member's last epoch
    predictions: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # split -> (N,) uint8 per epoch
    diverged: bool = False
    stopped: bool = False
    optimizer: torch.optim.Optimizer | None = None  # its own optimiser and state, once it has left


@dataclass(eq=False)
class FusedRun:
    """K trials made ready to train as one network on one device: what ``train_many`` loops over (the benchmark reuses it)."""

    device: torch.device
    dtype: torch.dtype  # compute dtype: bfloat16 (autocast) or float32
    members: list[Member]  # still training, in fused order (grouped by activation); empty once all have left
    optimizer_name: str
    batch_size: int
    augment: bool
    eval_batch: int  # images per evaluation pass at K=1; evaluate_many shrinks it as K grows (MAX_EVAL_ELEMENTS)
    num_classes: int
    memory_format: torch.memory_format = torch.channels_last
    # The members' TrainConfig.compile_mode: None (eager), "cuda-graph" (the whole step replayed through self.graph) or
    # a torch.compile mode, which compiles the forward pass with the losses and the optimiser step apart (backward between).
    compile_mode: str | None = None
    memory_format_choice: str = ""  # the layout's name and why it was chosen ("auto": measured, cnn.layers)
    net: FusedCNN | None = field(init=False)  # None once every member has left
    optimizer: FusedOptimizer | None = field(init=False)
    losses: _MemberLosses | None = field(init=False)
    compiled: tuple[Callable, Callable] | None = field(init=False, default=None)  # (forward and losses, optimiser step)
    graph: compiling.StepGraph | None = field(init=False, default=None)  # compile_mode "cuda-graph": the captured step

    def __post_init__(self):
        if self.compile_mode is not None:
            lookup(compiling.COMPILE_MODES, self.compile_mode, "compile mode")
        self.net = FusedCNN([m.model for m in self.members], self.memory_format)
        self.optimizer = FusedOptimizer(self.optimizer_name, self.net.parameter_list(), [m.config.lr for m in self.members])
        self._losses()

    def _losses(self) -> None:
        self.losses = _MemberLosses([m.config.loss for m in self.members], [m.criterion for m in self.members], self.device)
        self.compiled = None  # a narrower network: compiled (or captured) again on the next step
        self.graph = compiling.StepGraph() if self.compile_mode == compiling.CUDA_GRAPH else None

    def forward_losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (K, B, C) and each member's loss (K,) of member batches ``x`` (B, K*3, H, W) with labels ``y`` (K, B)."""
        with _autocast(x.device, self.dtype):
            logits = self.net(normalize(x))  # (K, B, C)
        # Autocast computes every loss of LOSSES in fp32, so upcasting first gives train()'s losses; vmap would bypass autocast.
        return logits, self.losses(logits.float(), y)

    def step_functions(self) -> tuple[Callable, Callable]:
        """(forward and losses, optimiser step): eager, or compiled with ``compile_mode`` (once per set of members)."""
        if not compiling.compiled(self.compile_mode):
            return self.forward_losses, self.optimizer.step
        if self.compiled is None:
            mode = self.compile_mode
            self.compiled = (compiling.compile_forward(self.forward_losses, mode), compiling.compile_step(self.optimizer.step, mode))
        return self.compiled

    def drop(self, leaving: list[Member]) -> None:
        """Take ``leaving`` out of the fused computation, so the others run without them.

        Each leaving member's own model gets its weights and BatchNorm statistics, and its
        ``optimizer`` its state; the rest go on as they are. Once none is left, ``net``,
        ``optimizer`` and ``losses`` are None.
        """
        positions = [k for k, m in enumerate(self.members) if m in leaving]
        if not positions:
            return
        for k in positions:
            member = self.members[k]
            self.net.export(k, member.model)
            member.optimizer = self.optimizer.export(k, member.model)
        staying = [k for k in range(len(self.members)) if k not in positions]
        self.members = [self.members[k] for k in staying]
        if not self.members:
            self.net = self.optimizer = self.losses = None
            return
        self.net.keep(staying)
        self.optimizer.keep(staying, self.net.parameter_list())
        self._losses()

    def finish(self) -> None:
        """Every member leaves: each gets its weights, BatchNorm statistics and optimiser state back."""
        self.drop(list(self.members))


def check_shared(configs: list[TrainConfig]) -> None:
    """Raise ValueError unless ``configs`` is non-empty and agrees on :data:`SHARED_FIELDS`."""
    if not configs:
        raise ValueError("train_many needs at least one config but got none")
    for name in SHARED_FIELDS:
        first = getattr(configs[0], name)
        for k, config in enumerate(configs[1:], 1):
            if getattr(config, name) != first:
                other = getattr(config, name)
                raise ValueError(
                    f"fused trials must share {name}, but configs[0] has {name}={first!r} and configs[{k}] has {name}={other!r}"
                )


def setup_many(configs: list[TrainConfig], data: Data, memory_format: str = "channels_last") -> FusedRun:
    """Build each member exactly as ``setup`` does (same seed, same initial weights and generator) and fuse them.

    The members' shared ``compile_mode`` (None: eager) replays the training step as one CUDA graph ("cuda-graph") or
    compiles it in that torch.compile mode.
    """
    check_shared(configs)
    if memory_format != "auto":
        lookup(MEMORY_FORMATS, memory_format, "memory format")
    bind_device(configs[0].device)  # a worker on cuda:N allocates there, not on cuda:0
    members = []
    for index, config in enumerate(configs):
        run = setup(config, data)
        members.append(Member(index, config, run.model, run.criterion, run.generator))
    why = f"{memory_format} as asked"
    if memory_format == "auto":  # the layout whose grouped convolutions ran faster here, at this K and batch size
        memory_format, why = auto_memory_format(run.device, run.dtype, len(configs), configs[0].batch_size)
    layout = MEMORY_FORMATS[memory_format]
    members.sort(key=lambda m: (m.config.activation, m.index))  # equal activations side by side: one call per run of them
    first = configs[0]
    return FusedRun(
        device=run.device,
        dtype=run.dtype,
        members=members,
        optimizer_name=first.optimizer,
        batch_size=first.batch_size,
        augment=first.augment,
        eval_batch=run.eval_batch,
        num_classes=run.num_classes,
        memory_format=layout,
        compile_mode=first.compile_mode,
        memory_format_choice=f"{memory_format}: {why}",
    )


def member_batches(
    images: torch.Tensor, idx: torch.Tensor, draws: torch.Tensor | None = None, memory_format: torch.memory_format = torch.channels_last
) -> torch.Tensor:
    """Each member's own batch, side by side along channels: uint8 (N, 3, H, W), indices (K, B) -> (B, K*3, H, W).

    With ``draws`` (K, 3, B) on the images' device (see :func:`draw_many`), member k's batch is
    cropped and flipped by ``draws[k]``, all members in one pass, as ``train_one_epoch``
    augments one. The result is in ``memory_format`` (channels_last: the layout convs want).
    """
    k, b = idx.shape
    x = images[idx.reshape(-1)]  # (K*B, 3, H, W)
    if draws is not None:
        x = crop_flip(x, draws.transpose(0, 1).reshape(3, k * b))
    h, w = x.shape[-2:]
    # (K, B, 3, H, W) -> (B, H, W, K, 3) -> (B, H, W, K*3), one copy; permuted back, that is (B, K*3, H, W) in channels_last.
    x = x.unflatten(0, (k, b)).permute(1, 3, 4, 0, 2).reshape(b, h, w, k * x.shape[1]).permute(0, 3, 1, 2)
    return x if memory_format == torch.channels_last else x.contiguous(memory_format=memory_format)


def draw_many(generators: list[torch.Generator], batch: int, device: torch.device) -> torch.Tensor:
    """Every member's augmentation draws for ``batch`` images (an epoch's), each from its own generator: uint8 (K, 3, B)
    on ``device``, one copy."""
    return to_device(torch.stack([draw(batch, g) for g in generators]), device)


def train_step(run: FusedRun, images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor, draws: torch.Tensor | None = None):
    """One optimiser step of every member of ``run`` on its own batch ``idx`` (K, B) of uint8 ``images``.

    Every member is stepped on the sum of the members' losses (each member's parameters get
    its own loss's gradient only). Returns its (K,) losses (batch means) and (K,) correct
    counts, on the device: nothing here waits for the device.
    """
    x = member_batches(images, idx, draws, run.memory_format)
    y = labels[idx]  # (K, B)
    forward_losses, optimizer_step = run.step_functions()
    logits, losses = forward_losses(x, y)  # (K, B, C), (K,)
    run.optimizer.zero_grad()
    losses.sum().backward()
    optimizer_step()
    return losses.detach(), (logits.argmax(2) == y).sum(1)


def train_epoch_many(run: FusedRun, images: torch.Tensor, labels: torch.Tensor) -> dict[int, tuple[float, float, bool]]:
    """One shuffled pass of every member of ``run`` over uint8 ``images`` (N, 3, H, W) on the device.

    Each member draws its own ``randperm`` (and augmentation) from its own generator, as
    ``train_one_epoch`` does for one model. A member whose running loss turns NaN or infinite
    stops at once, as ``train_one_epoch`` stops, and leaves the fused computation for the rest
    of the epoch; when all have left, the epoch ends there.

    Returns:
        member index -> (mean training loss, training accuracy in percent, diverged), for
        every member that started the epoch.
    """
    device = images.device
    results: dict[int, tuple[float, float, bool]] = {}
    if not run.members:
        return results
    run.net.train()
    n = len(labels)
    orders = to_device(torch.stack([torch.randperm(n, generator=m.generator) for m in run.members]), device)  # (K, N)
    # The whole epoch's augmentation, drawn after the shuffle from each member's generator as train_one_epoch draws it:
    # (K, N) codes in one copy, decoded to (K, 3, N) for all members at once; a step takes its columns.
    codes = to_device(torch.stack([draw_codes(n, m.generator) for m in run.members]), device) if run.augment else None
    draws = decode(codes) if codes is not None else None
    loss_sum = torch.zeros(len(run.members), device=device)  # (K,) sums over images; on the device, no sync per step
    correct = torch.zeros(len(run.members), dtype=torch.int64, device=device)
    seen = 0
    # As train_one_epoch: a finiteness check syncs the GPU. It sits between steps, outside the (compiled, captured) step.
    check_every = 1 if device.type == "cpu" else 25
    for step, start in enumerate(range(0, n, run.batch_size), 1):
        idx = orders[:, start : start + run.batch_size]  # (K, B)
        step_draws = draws[:, :, start : start + run.batch_size] if draws is not None else None  # (K, 3, B)
        if run.graph is not None:  # compile_mode "cuda-graph": the whole step replayed as one CUDA graph
            losses, hits = run.graph(lambda i, d: train_step(run, images, labels, i, d), idx, step_draws, fixed=(images, labels))
        else:
            losses, hits = train_step(run, images, labels, idx, step_draws)
        loss_sum += losses * idx.shape[1]
        correct += hits
        seen += idx.shape[1]
        if step % check_every == 0 and not (finite := torch.isfinite(loss_sum)).all():
            keep = finite.tolist()
            leaving = [m for m, ok in zip(run.members, keep, strict=True) if not ok]
            for m, total, count in zip(run.members, loss_sum.tolist(), correct.tolist(), strict=True):
                if m in leaving:
                    results[m.index] = (total / seen, 100.0 * count / seen, True)
            run.drop(leaving)
            if not run.members:
                return results  # every member diverged: nothing left to train
            loss_sum, correct, orders = loss_sum[finite], correct[finite], orders[finite]
            draws = draws[finite] if draws is not None else None
    for m, total, count in zip(run.members, loss_sum.tolist(), correct.tolist(), strict=True):
        results[m.index] = (total / seen, 100.0 * count / seen, not math.isfinite(total / seen))
    return results


def eval_batch_for(run: FusedRun, shape: torch.Size) -> int:
    """Images per fused evaluation pass of images of ``shape`` (..., H, W): ``run.eval_batch``, less when K is large.

    Keeps layer 1's activation, (B, K*c, H, W), at most :data:`MAX_EVAL_ELEMENTS` elements.
    """
    per_image = len(run.members) * run.net.stacked["layer1_0_weight"].shape[1] * shape[-2] * shape[-1]
    return max(1, min(run.eval_batch, MAX_EVAL_ELEMENTS // per_image))


@torch.inference_mode()
def evaluate_many(run: FusedRun, images: torch.Tensor, labels: torch.Tensor) -> list[Scores]:
    """Loss, accuracy (percent), confusion counts and per-image predictions of each member of ``run``, in its order.

    All members see the same images in the same passes; each is scored with its own loss.
    Counts accumulate on the device: the only wait for the device is at the end. With no
    member left, the list is empty.
    """
    if not run.members:
        return []
    run.net.eval()
    device, k, c = images.device, len(run.members), run.num_classes
    loss_sum = torch.zeros(k, device=device)
    predicted = torch.empty(k, len(labels), dtype=torch.uint8, device=device)  # (K, N)
    batch = eval_batch_for(run, images.shape)
    for start in range(0, len(labels), batch):
        x, y = images[start : start + batch], labels[start : start + batch]
        with _autocast(device, run.dtype):
            logits = run.net(normalize(x).contiguous(memory_format=run.memory_format))  # (K, B, C) from the shared (B, 3, H, W)
        y = y.expand(k, -1)  # (K, B)
        loss_sum += run.losses(logits.float(), y) * y.shape[1]
        predicted[:, start : start + y.shape[1]] = logits.argmax(2)
    # One count over all members once the pass is done: (member, true, predicted) cells, flattened.
    cells = ((torch.arange(k, device=device)[:, None] * c + labels) * c + predicted).flatten()
    confusion = torch.bincount(cells, minlength=k * c * c).view(k, c, c)
    hits = confusion.diagonal(dim1=1, dim2=2).sum(1)  # (K,) images right, all members at once: no host call per member
    confusion, predicted, n = confusion.cpu(), predicted.cpu(), len(labels)
    return [
        Scores(total / n, 100.0 * right / n, conf, preds)
        for total, right, conf, preds in zip(loss_sum.tolist(), hits.tolist(), confusion, predicted, strict=True)
    ]


def train_many(
    configs: list[TrainConfig],
    data: Data,
    on_epoch: Callable[[int, EpochRow], bool | None] | None = None,
    memory_format: str = "channels_last",
) -> list[TrainResult]:
    """Train one CNN per config, all at once as one fused network; ``result[k]`` is what ``train(configs[k], data)`` gives.

    The configs must agree on :data:`SHARED_FIELDS` and may differ in activation, loss, lr
    and seed. Each member keeps its own initial weights, batch order, augmentation, loss,
    learning rate, BatchNorm statistics and optimiser state, so its history matches its own
    ``train`` run up to floating-point summation order. A member that diverges, or that
    ``on_epoch`` stops, leaves the fused computation and the others go on without it.

    Args:
        configs: one per trial.
        data: train and test splits (and a validation split, evaluated too when present).
        on_epoch: called as ``on_epoch(k, row)`` with each member's index in ``configs`` and
            its epoch row; returning True stops that member.
        memory_format: the fused network's activation layout, a key of :data:`MEMORY_FORMATS`
            ("channels_last" or "contiguous"), or "auto": the one whose grouped convolutions a short measurement
            on the device finds faster (:func:`cnn.layers.auto_memory_format`); results do not depend on it.

    Returns:
        One :class:`TrainResult` per config, in order; each ``model`` is a plain ``CNN``.
        A row's ``seconds`` is the fused epoch's wall time (training and evaluation) divided
        by the number of members that trained in it: each member's share.

    Example:
        >>> configs = [TrainConfig(epochs=1, lr=lr) for lr in (1e-3, 3e-4)]  # doctest: +SKIP
        >>> [r.test_acc for r in train_many(configs, load_data("data"))]  # doctest: +SKIP
    """
    run = setup_many(configs, data, memory_format)
    members = sorted(run.members, key=lambda m: m.index)
    train_set, test_set = data.train.to(run.device), data.test.to(run.device)
    val_set = data.val.to(run.device) if data.val is not None else None
    batch_orders = {m.index: order_fingerprint(m.generator, len(train_set)) for m in members}
    epochs = configs[0].epochs
    for epoch in range(1, epochs + 1):
        if not run.members:
            break
        start = time.perf_counter()
        trained = sorted(run.members, key=lambda m: m.index)
        rows: dict[int, EpochRow] = {}
        for index, (train_loss, train_acc, diverged) in train_epoch_many(run, train_set.images, train_set.labels).items():
            rows[index] = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc}
            members[index].diverged = diverged
        splits = [("val", val_set), ("test", test_set)] if val_set is not None else [("test", test_set)]
        for split, images in splits:
            split_tensors = (images.images, images.labels)
            scores = {m.index: s for m, s in zip(run.members, evaluate_many(run, *split_tensors), strict=True)}
            for m in trained:
                if m.index not in scores:  # diverged mid-epoch and left: its own model, as train() evaluates it
                    scores[m.index] = evaluate(m.model, m.criterion, *split_tensors, run.num_classes, run.eval_batch, run.dtype)
                rows[m.index][f"{split}_loss"], rows[m.index][f"{split}_acc"] = scores[m.index].loss, scores[m.index].acc
                m.predictions.setdefault(split, []).append(scores[m.index].predictions)
                if split == "test":
                    m.confusion = scores[m.index].confusion
        seconds = (time.perf_counter() - start) / len(trained)
        for m in trained:
            rows[m.index]["seconds"] = seconds
            m.history.append(rows[m.index])
            if on_epoch is not None and on_epoch(m.index, rows[m.index]) and epoch < epochs:
                m.stopped = True
        run.drop([m for m in run.members if m.diverged or m.stopped])
    run.finish()
    precision = str(run.dtype).removeprefix("torch.")
    return [
        TrainResult(
            m.history,
            m.model,
            m.confusion.tolist(),
            str(run.device),
            precision,
            m.diverged,
            m.stopped,
            batch_orders[m.index],
            {split: torch.stack(rows) for split, rows in m.predictions.items()},
            run.memory_format_choice,
        )
        for m in members
    ]
