"""Horizontal fusion: K trials of the notebook's CNN trained at once as one network.

As in HFTA (Wang et al., MLSys 2021): K copies of a model that is too small to fill an
accelerator become one wider network. Every convolution becomes a grouped convolution
(``groups=K``, member k owns channels ``[k*c, (k+1)*c)``), every BatchNorm one BatchNorm over
K*c channels (per-channel statistics, so exactly per member), and the classifier a batched
matmul over (K, B, 2048). Each member keeps what makes it a trial of its own: initial
weights, batch order, augmentation draws, activation, loss, learning rate, BatchNorm
statistics and optimiser state. Member k's history is therefore that of
``train(configs[k], data)`` up to floating-point summation order.

The members' parameters are not copied into fused tensors: each member stays a plain
:class:`cnn.model.CNN` whose parameters the fused forward concatenates on the fly (a few
small copies per step), so one optimiser parameter group per member carries its learning
rate, and a member that leaves takes an ordinary model with it.
"""

import itertools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cnn.augment import augment as augment_batch
from cnn.data import Data, normalize
from cnn.model import CNN
from cnn.registry import lookup
from cnn.train import OPTIMIZERS, EpochRow, TrainConfig, TrainResult, _autocast, evaluate, order_fingerprint, setup

# Fields that decide the shape of the shared computation: fused trials must agree on them.
SHARED_FIELDS = ("epochs", "batch_size", "optimizer", "augment", "device", "precision", "eval_batch_size")

_LAYERS = ("layer1", "layer2", "layer3")  # CNN's Conv-BatchNorm-activation-MaxPool blocks


class FusedCNN(nn.Module):
    """K plain :class:`CNN` models computed as one network.

    The members' parameters are used in place (gradients reach them); their BatchNorm running
    statistics live in fused buffers while the network trains and go back into the members
    with :meth:`write_back`. Members with the same activation should sit next to each other:
    each run of equal activations is applied as one call.

    Input: member k's images in channels ``[3k, 3k+3)``, (B, K*3, H, W), or one batch that
    all members see, (B, 3, H, W). Output: logits (K, B, C).
    """

    def __init__(self, models: list[CNN]):
        super().__init__()
        self.members = nn.ModuleList(models)
        self.k = len(models)
        # Per layer, the members' (conv, batchnorm) modules in member order; plain lists, registered once above.
        self._convs = [[getattr(m, name)[0] for m in models] for name in _LAYERS]
        self._norms = [[getattr(m, name)[1] for m in models] for name in _LAYERS]
        for i, norms in enumerate(self._norms):
            self.register_buffer(f"running_mean{i}", torch.cat([bn.running_mean for bn in norms]))  # (K*c,)
            self.register_buffer(f"running_var{i}", torch.cat([bn.running_var for bn in norms]))
        # Runs of consecutive members with the same activation (compared by repr, so arguments count): [(module, members)].
        activations = [m.layer1[2] for m in models]
        self._runs = [(next(group), 1 + sum(1 for _ in group)) for _, group in itertools.groupby(activations, key=repr)]
        self.steps = 0  # training-mode forwards since the last write_back: each adds 1 to every member's num_batches_tracked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.steps += 1
        for i in range(len(_LAYERS)):
            convs, norms = self._convs[i], self._norms[i]
            weight = torch.cat([c.weight for c in convs])  # (K*c_out, c_in, 3, 3): group k's filters are member k's
            bias = torch.cat([c.bias for c in convs])
            # A batch all members share: one ungrouped conv with K*c_out filters is the K convolutions at once,
            # without repeating the input K times.
            groups = 1 if i == 0 and x.shape[1] == convs[0].in_channels else self.k
            x = F.conv2d(x, weight, bias, padding=1, groups=groups)  # (B, K*c_out, H, W)
            x = F.batch_norm(
                x,
                getattr(self, f"running_mean{i}"),
                getattr(self, f"running_var{i}"),
                torch.cat([bn.weight for bn in norms]),
                torch.cat([bn.bias for bn in norms]),
                self.training,
                norms[0].momentum,
                norms[0].eps,
            )
            x = F.max_pool2d(self._activate(x), 2)  # (B, K*c_out, H/2, W/2)
        # (B, K*128, 4, 4) -> (K, B, 2048): member k's channels flattened (c, h, w), the order CNN.forward's flatten(1) gives.
        features = x.reshape(x.shape[0], self.k, -1).transpose(0, 1)
        weight = torch.stack([m.fc.weight for m in self.members])  # (K, C, 2048)
        bias = torch.stack([m.fc.bias for m in self.members]).unsqueeze(1)  # (K, 1, C)
        return torch.baddbmm(bias, features, weight.transpose(1, 2))  # (K, B, C)

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        if len(self._runs) == 1:
            return self._runs[0][0](x)
        per_member = x.shape[1] // self.k
        parts = x.split([n * per_member for _, n in self._runs], dim=1)
        return torch.cat([activation(part) for (activation, _), part in zip(self._runs, parts, strict=True)], dim=1)

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the fused BatchNorm statistics into the members' own BatchNorm layers."""
        for i, norms in enumerate(self._norms):
            means = getattr(self, f"running_mean{i}").chunk(self.k)
            variances = getattr(self, f"running_var{i}").chunk(self.k)
            for bn, mean, var in zip(norms, means, variances, strict=True):
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
                bn.num_batches_tracked += self.steps
        self.steps = 0


class _MemberLosses:
    """Each member's own loss: float logits (K, B, C) and labels (K, B) -> (K,) batch means.

    Members that share a loss are computed as one vmapped call rather than one call each.
    """

    def __init__(self, names: list[str], criteria: list[nn.Module], device: torch.device):
        positions: dict[str, list[int]] = {}
        for position, name in enumerate(names):
            positions.setdefault(name, []).append(position)
        self.groups = [(torch.vmap(criteria[ps[0]]), torch.tensor(ps, device=device)) for ps in positions.values()]
        grouped = torch.tensor([p for ps in positions.values() for p in ps])
        self.inverse = torch.argsort(grouped).to(device)  # grouped order -> member order

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():
            # multi_margin has no batching rule; vmap falls back to a loop over members and says so every call.
            warnings.filterwarnings("ignore", message="There is a performance drop")
            if len(self.groups) == 1:
                return self.groups[0][0](logits, labels)
            parts = [loss(logits[pos], labels[pos]) for loss, pos in self.groups]
            return torch.cat(parts)[self.inverse]


@dataclass(eq=False)  # members are told apart by identity
class Member:
    """One trial inside a fused run."""

    index: int  # position in train_many's configs
    config: TrainConfig
    model: CNN  # the member's own weights, used in place by the fused network; exported as the result
    criterion: nn.Module
    generator: torch.Generator  # the member's shuffling and augmentation, as setup() seeds it
    history: list[EpochRow] = field(default_factory=list)
    confusion: torch.Tensor | None = None  # test confusion (C, C) after the member's last epoch
    diverged: bool = False
    stopped: bool = False


@dataclass(eq=False)
class FusedRun:
    """K trials made ready to train as one network on one device: what ``train_many`` loops over (the benchmark reuses it)."""

    device: torch.device
    dtype: torch.dtype  # compute dtype: bfloat16 (autocast) or float32
    members: list[Member]  # still training, in fused order (grouped by activation); empty once all have left
    optimizer_name: str
    batch_size: int
    augment: bool
    eval_batch: int  # images per evaluation pass; each pass computes every member
    num_classes: int
    net: FusedCNN = field(init=False)
    optimizer: torch.optim.Optimizer = field(init=False)
    losses: _MemberLosses = field(init=False)

    def __post_init__(self):
        self._assemble(None)

    def _assemble(self, previous: torch.optim.Optimizer | None) -> None:
        # The fused network is rebuilt from the members' own models; their optimiser state moves across unchanged.
        self.net = FusedCNN([m.model for m in self.members])
        groups = [{"params": list(m.model.parameters()), "lr": m.config.lr} for m in self.members]
        self.optimizer = lookup(OPTIMIZERS, self.optimizer_name, "optimizer")(groups, self.members[0].config.lr)
        if previous is not None:
            for group in groups:
                for p in group["params"]:
                    if p in previous.state:
                        self.optimizer.state[p] = previous.state[p]  # Adam's step, exp_avg, exp_avg_sq; SGD's momentum
        self.losses = _MemberLosses([m.config.loss for m in self.members], [m.criterion for m in self.members], self.device)

    def drop(self, leaving: list[Member]) -> None:
        """Take ``leaving`` out of the fused computation, so the others run without them.

        Their models get their BatchNorm statistics back and keep their weights; the rest are
        fused again with their weights, statistics and optimiser state as they are.
        """
        if not leaving:
            return
        self.net.write_back()
        self.members = [m for m in self.members if m not in leaving]
        if self.members:
            self._assemble(self.optimizer)

    def finish(self) -> None:
        """Write every member's BatchNorm statistics back into its own model."""
        if self.members:
            self.net.write_back()


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


def setup_many(configs: list[TrainConfig], data: Data) -> FusedRun:
    """Build each member exactly as ``setup`` does (same seed, same initial weights and generator) and fuse them."""
    check_shared(configs)
    members = []
    for index, config in enumerate(configs):
        run = setup(config, data)
        members.append(Member(index, config, run.model, run.criterion, run.generator))
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
    )


def member_batches(images: torch.Tensor, idx: torch.Tensor, generators: list[torch.Generator] | None = None) -> torch.Tensor:
    """Each member's own batch, side by side along channels: uint8 (N, 3, H, W), indices (K, B) -> (B, K*3, H, W).

    With ``generators``, member k's batch is augmented with ``generators[k]`` exactly as
    ``train_one_epoch`` augments one. The result is channels_last, the layout convs want.
    """
    k, b = idx.shape
    x = images[idx.reshape(-1)].unflatten(0, (k, b))  # (K, B, 3, H, W)
    if generators is not None:
        x = torch.stack([augment_batch(x[j], g) for j, g in enumerate(generators)])
    h, w = x.shape[-2:]
    # (K, B, 3, H, W) -> (B, H, W, K, 3) -> (B, H, W, K*3), one copy; permuted back, that is (B, K*3, H, W) in channels_last.
    return x.permute(1, 3, 4, 0, 2).reshape(b, h, w, k * x.shape[2]).permute(0, 3, 1, 2)


def train_epoch_many(run: FusedRun, images: torch.Tensor, labels: torch.Tensor) -> dict[int, tuple[float, float, bool]]:
    """One shuffled pass of every member of ``run`` over uint8 ``images`` (N, 3, H, W) on the device.

    Each member draws its own ``randperm`` (and augmentation) from its own generator, as
    ``train_one_epoch`` does for one model, and is stepped on the sum of the members' losses
    (each member's parameters get its own loss's gradient only). A member whose running loss
    turns NaN or infinite stops at once, as ``train_one_epoch`` stops, and leaves the fused
    computation for the rest of the epoch.

    Returns:
        member index -> (mean training loss, training accuracy in percent, diverged), for
        every member that started the epoch.
    """
    device = images.device
    run.net.train()
    n = len(labels)
    orders = torch.stack([torch.randperm(n, generator=m.generator) for m in run.members]).to(device)  # (K, N)
    loss_sum = torch.zeros(len(run.members), device=device)  # (K,) sums over images; on the device, no sync per step
    correct = torch.zeros(len(run.members), dtype=torch.int64, device=device)
    seen = 0
    check_every = 1 if device.type == "cpu" else 25  # as train_one_epoch: a finiteness check syncs the GPU
    results: dict[int, tuple[float, float, bool]] = {}
    for step, start in enumerate(range(0, n, run.batch_size), 1):
        idx = orders[:, start : start + run.batch_size]  # (K, B)
        x = member_batches(images, idx, [m.generator for m in run.members] if run.augment else None)
        y = labels[idx]  # (K, B)
        with _autocast(device, run.dtype):
            logits = run.net(normalize(x))  # (K, B, C)
        # Autocast computes every loss of LOSSES in fp32, so upcasting first gives train()'s losses; vmap would bypass autocast.
        losses = run.losses(logits.float(), y)  # (K,)
        run.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        run.optimizer.step()
        loss_sum += losses.detach() * y.shape[1]
        correct += (logits.argmax(2) == y).sum(1)
        seen += y.shape[1]
        if step % check_every == 0 and not (finite := torch.isfinite(loss_sum)).all():
            keep = finite.tolist()
            leaving = [m for m, ok in zip(run.members, keep, strict=True) if not ok]
            for m, total, hits in zip(run.members, loss_sum.tolist(), correct.tolist(), strict=True):
                if m in leaving:
                    results[m.index] = (total / seen, 100.0 * hits / seen, True)
            run.drop(leaving)
            loss_sum, correct, orders = loss_sum[finite], correct[finite], orders[finite]
            if not run.members:
                return results
    for m, total, hits in zip(run.members, loss_sum.tolist(), correct.tolist(), strict=True):
        results[m.index] = (total / seen, 100.0 * hits / seen, not math.isfinite(total / seen))
    return results


@torch.inference_mode()
def evaluate_many(run: FusedRun, images: torch.Tensor, labels: torch.Tensor) -> list[tuple[float, float, torch.Tensor]]:
    """Loss, accuracy (percent) and confusion counts (C, C) [true, predicted] of each member of ``run``, in its order.

    All members see the same images in the same passes; each is scored with its own loss.
    """
    run.net.eval()
    device, k, c = images.device, len(run.members), run.num_classes
    loss_sum = torch.zeros(k, device=device)
    pairs = torch.zeros(k * c * c, dtype=torch.int64, device=device)  # (member, true, predicted) counts, flattened
    first_row = torch.arange(k, device=device)[:, None] * c  # (K, 1): member k's rows of the stacked confusions start at k*C
    for start in range(0, len(labels), run.eval_batch):
        x, y = images[start : start + run.eval_batch], labels[start : start + run.eval_batch]
        with _autocast(device, run.dtype):
            logits = run.net(normalize(x))  # (K, B, C) from the shared (B, 3, H, W)
        y = y.expand(k, -1)  # (K, B)
        loss_sum += run.losses(logits.float(), y) * y.shape[1]
        pairs += torch.bincount(((first_row + y) * c + logits.argmax(2)).flatten(), minlength=k * c * c)
    confusion = pairs.view(k, c, c).cpu()
    n = len(labels)
    return [(total / n, 100.0 * conf.trace().item() / n, conf) for total, conf in zip(loss_sum.tolist(), confusion, strict=True)]


def train_many(configs: list[TrainConfig], data: Data, on_epoch: Callable[[int, EpochRow], bool | None] | None = None) -> list[TrainResult]:
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

    Returns:
        One :class:`TrainResult` per config, in order; each ``model`` is a plain ``CNN``.
        A row's ``seconds`` is the fused epoch's wall time (training and evaluation) divided
        by the number of members that trained in it: each member's share.

    Example:
        >>> configs = [TrainConfig(epochs=1, lr=lr) for lr in (1e-3, 3e-4)]  # doctest: +SKIP
        >>> [r.test_acc for r in train_many(configs, load_data("data"))]  # doctest: +SKIP
    """
    run = setup_many(configs, data)
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
                rows[m.index][f"{split}_loss"], rows[m.index][f"{split}_acc"], confusion = scores[m.index]
                if split == "test":
                    m.confusion = confusion
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
        TrainResult(m.history, m.model, m.confusion.tolist(), str(run.device), precision, m.diverged, m.stopped, batch_orders[m.index])
        for m in members
    ]
