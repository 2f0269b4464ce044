"""Training and evaluation of the notebook's CNN, with a per-epoch callback.

This module knows nothing of Optuna: ``train`` calls ``on_epoch(row)`` after every epoch
and stops when it returns True, which is how a study's pruner plugs in.
"""

import hashlib
import json
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from cnn import compiling
from cnn.augment import crop_flip, decode, draw_codes, to_device
from cnn.data import Data, default_cache_dir, normalize
from cnn.losses import LOSSES, build_loss
from cnn.model import ACTIVATIONS, build_model
from cnn.registry import lookup

# name -> constructor of an optimiser from (parameters, learning rate).
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),  # the notebook's
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
}

PRECISIONS = {"auto": None, "bf16": torch.bfloat16, "fp32": torch.float32}

EpochRow = dict[str, float]  # epoch, train_loss, train_acc, [val_loss, val_acc,] test_loss, test_acc, seconds


class DeviceError(ValueError):
    """A device that this machine does not have."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides one training run."""

    activation: str = "relu"  # key of cnn.ACTIVATIONS
    loss: str = "cross_entropy"  # key of cnn.LOSSES
    lr: float = 1e-3  # optimiser step size
    epochs: int = 10  # passes over the training set
    batch_size: int = 100  # images per optimiser step
    optimizer: str = "adam"  # key of OPTIMIZERS: "adam" or "sgd" (momentum 0.9)
    augment: bool = False  # random crop (4-pixel padding) and horizontal flip, on the device
    seed: int = 0  # seeds initialisation, shuffling and augmentation
    device: str = "auto"  # "auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N" or "mps"
    precision: str = "auto"  # "auto", "bf16" or "fp32"; auto = bf16 autocast where it is faster (precision_choice)
    eval_batch_size: int | None = None  # images per evaluation pass (None: 100 on CPU, 1000 on GPUs); results do not depend on it
    # None: eager; "cuda-graph" (CUDA only): the whole eager step captured once and replayed as one CUDA graph; another
    # key of cnn.compiling.COMPILE_MODES compiles the step in that torch.compile mode ("reduce-overhead": CUDA graphs on
    # a GPU). The same arithmetic, up to floating-point rounding; the first epoch pays for compiling or capturing.
    compile_mode: str | None = None

    def __post_init__(self):
        lookup(ACTIVATIONS, self.activation, "activation")
        lookup(LOSSES, self.loss, "loss")
        lookup(OPTIMIZERS, self.optimizer, "optimizer")
        lookup(PRECISIONS, self.precision, "precision")
        if self.compile_mode is not None:
            lookup(compiling.COMPILE_MODES, self.compile_mode, "compile mode")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 but got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number but got {self.lr}")


@dataclass
class TrainResult:
    """What a run produced: its per-epoch history and the trained model."""

    history: list[EpochRow]
    model: nn.Module
    confusion: list[list[int]]  # test confusion counts after the last epoch, [true][predicted]
    device: str
    precision: str  # "bfloat16" (autocast) or "float32"
    diverged: bool = False  # the training loss became NaN or infinite; training stopped there
    stopped: bool = False  # on_epoch asked to stop before the last epoch
    batch_order: str = ""  # fingerprint of the first epoch's shuffle: runs with the same seed share it
    # split ("test", "val") -> (epochs run, images) uint8: the class predicted for every image after every epoch
    predictions: dict[str, torch.Tensor] = field(default_factory=dict)
    memory_format: str = ""  # a fused run's activation layout and why it was chosen (cnn.train_many); "" for one trial
    n_params: int = field(init=False)

    def __post_init__(self):
        self.n_params = sum(p.numel() for p in self.model.parameters())

    @property
    def test_acc(self) -> float:
        return self.history[-1]["test_acc"]


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a device name into a ``torch.device`` this machine has.

    ``auto`` picks CUDA, then Apple's MPS, then the CPU, as the notebook does.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device {name!r} is not available: this machine has no usable CUDA GPU; use cpu or auto")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device {name!r} is not available: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {name!r} is not available: MPS needs Apple silicon; use cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def bind_device(name: str = "auto") -> torch.device:
    """Resolve ``name`` and, for a CUDA GPU, make it this process's current device (``torch.cuda.set_device``).

    A worker process given ``cuda:N`` calls this first, so that what PyTorch puts on "the
    current GPU" (a CUDA context, cuDNN and cuBLAS handles, pinned-memory bookkeeping) goes to
    GPU N and not also to GPU 0. Elsewhere it only resolves the name.
    """
    device = resolve_device(name)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return device


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX's bfloat16 tile unit (Sapphire Rapids and later): /proc/cpuinfo's ``amx_bf16`` flag.

    Where there is no /proc/cpuinfo, PyTorch's own probe (``torch._C._cpu._init_amx``, which also asks the kernel for
    the tiles) answers.
    """
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("flags") and "amx_bf16" in line.split() for line in cpuinfo)
    except OSError:
        try:
            return bool(torch._C._cpu._init_amx())
        except (AttributeError, RuntimeError):
            return False


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        import platform

        return platform.processor() or platform.machine()


def measure_cpu_bf16(steps: int = 3, rounds: int = 3, batch_size: int = 100) -> float:
    """How many times faster a bf16-autocast training step of the notebook's CNN is than an fp32 one, on this CPU now.

    One model, its Adam, a random batch of ``batch_size``; after one warm-up step each, ``rounds`` rounds of ``steps``
    fp32 steps then ``steps`` bf16 steps, alternating so that both see the same load. Returns the median over rounds of
    fp32 seconds / bf16 seconds (above 1: bf16 is faster). About 2 s on 2 cores.
    """
    generator = torch.Generator().manual_seed(0)
    model = build_model().to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    x = torch.randn(batch_size, 3, 32, 32, generator=generator).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,), generator=generator)
    cpu = torch.device("cpu")

    def seconds(dtype: torch.dtype, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            with _autocast(cpu, dtype):
                loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    seconds(torch.float32, 1), seconds(torch.bfloat16, 1)  # oneDNN builds its kernels on a dtype's first step
    ratios = sorted(seconds(torch.float32, steps) / seconds(torch.bfloat16, steps) for _ in range(rounds))
    return ratios[len(ratios) // 2]


# bf16 must be at least this many times faster than fp32 for auto to pick it on a CPU: a tie keeps the exact fp32.
BF16_MARGIN = 1.05

_cpu_choice: tuple[torch.dtype, str] | None = None  # this process's answer: measured once


def _cpu_precision_choice() -> tuple[torch.dtype, str]:
    """auto's CPU precision: bf16 with AMX; otherwise measured (:func:`measure_cpu_bf16`), once per machine.

    The measurement is kept in the data cache folder (``$CNN_STUDY_CACHE``), keyed by CPU model, thread count and
    PyTorch version, so every process of a study (and every trial) resolves auto the same way without measuring again.
    """
    global _cpu_choice
    if _cpu_choice is not None:
        return _cpu_choice
    if cpu_has_amx():
        _cpu_choice = torch.bfloat16, "the CPU has AMX (amx_bf16): bfloat16 matrix tiles"
        return _cpu_choice
    try:
        avx512_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        avx512_bf16 = False
    if not avx512_bf16:
        _cpu_choice = torch.float32, "the CPU has no native bfloat16"
        return _cpu_choice
    key = f"{_cpu_name()}|{torch.get_num_threads()} threads|torch {torch.__version__}"
    folder = default_cache_dir()
    path = folder / f"cpu-bf16-{hashlib.sha1(key.encode()).hexdigest()[:12]}.json"
    try:
        ratio, when = float(json.loads(path.read_text())["bf16_speedup"]), "measured earlier"
    except (OSError, ValueError, KeyError, TypeError):
        ratio, when = measure_cpu_bf16(), "measured now"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"key": key, "bf16_speedup": ratio}) + "\n")
        except OSError:
            pass  # a read-only home: measure again next process
    dtype = torch.bfloat16 if ratio >= BF16_MARGIN else torch.float32
    _cpu_choice = dtype, f"a bf16 training step ran {ratio:.2f}x the speed of fp32 on this CPU (AVX512-BF16, no AMX; {when})"
    return _cpu_choice


def precision_choice(device: torch.device) -> tuple[torch.dtype, str]:
    """What ``--precision auto`` runs on ``device``, and why (one clause, for the logs).

    On CUDA: bfloat16 where the GPU computes it natively (Ampere and later). On the CPU:
    bfloat16 with AMX; fp32 without native bfloat16; in between (AVX512-BF16 without AMX,
    where bf16 may be faster or slower than fp32 depending on the CPU and the PyTorch
    build) whichever a short measurement of a training step finds faster, by at least
    :data:`BF16_MARGIN` for bf16 (see :func:`_cpu_precision_choice`).
    """
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return torch.bfloat16, "the GPU computes bfloat16 natively"
        return torch.float32, "the GPU has no native bfloat16"
    if device.type == "cpu":
        return _cpu_precision_choice()
    return torch.float32, f"no bfloat16 autocast on {device.type}"


def native_bf16(device: torch.device) -> bool:
    """Whether auto picks bfloat16 on ``device`` (CUDA since Ampere; AMX CPUs; AVX512-BF16 CPUs where it measured faster)."""
    return precision_choice(device)[0] == torch.bfloat16


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``precision`` on ``device``: bf16 autocast or plain fp32 (auto: see :func:`precision_choice`)."""
    dtype = lookup(PRECISIONS, precision, "precision")
    if dtype is None:
        dtype = precision_choice(device)[0]
    return dtype


def _autocast(device: torch.device, dtype: torch.dtype):
    # Autocast keeps BatchNorm, softmax and the losses in fp32; convolutions and the
    # linear layer run in bf16, which on CPUs without native bf16 would be slower, not faster.
    # No cast cache: each weight is cast once per step anyway, and a CUDA graph capture must not keep one (PyTorch's notes).
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16, cache_enabled=False)


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    augment: bool = False,
    dtype: torch.dtype = torch.float32,
    step: tuple[Callable, Callable] | None = None,
    graph: compiling.StepGraph | None = None,
) -> tuple[float, float, bool]:
    """One shuffled pass over uint8 ``images`` (N, 3, H, W) already on the device.

    With ``augment``, the epoch's augmentation is drawn once, right after its shuffle:
    ``draw_codes(N, generator)``, one code per position of the shuffled order (the image at
    position i gets code i: its crop offsets and flip). One host call and one copy per
    epoch, not per step (so a fused run draws once per member per epoch, not per step).

    ``step`` is (forward with loss, optimiser step) to run instead of the eager ones: :meth:`Setup.step_functions`,
    compiled when the config asks for it. The finiteness check stays outside them, between steps. With ``graph``
    (``compile_mode="cuda-graph"``, :attr:`Setup.graph`), each whole step from the batch's indices on is replayed as one
    CUDA graph (:class:`cnn.compiling.StepGraph`); the same operators, so the same arithmetic.

    Returns:
        (mean training loss, training accuracy in percent, diverged). Accuracy is counted
        on the fly over the epoch, as the notebook does. On a NaN or infinite loss the
        epoch stops at once, with the figures of the batches seen so far.
    """
    device = images.device
    model.train()
    forward, optimizer_step = step or (lambda x, y: forward_loss(model, criterion, dtype, x, y), optimizer.step)
    order = torch.randperm(len(labels), generator=generator).to(device)
    draws = decode(to_device(draw_codes(len(labels), generator), device)) if augment else None  # (3, N) uint8: dy, dx, flip
    loss_sum = torch.zeros((), device=device)  # sum over images; kept on the device, no sync per step
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    check_every = 1 if device.type == "cpu" else 25  # a finiteness check syncs the GPU: not every step
    diverged = False

    def one_step(idx: torch.Tensor, columns: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        # The images at positions idx of the shuffle, augmented by their draws' columns: (batch loss sum, hits).
        x, y = images[idx], labels[idx]
        if columns is not None:
            x = crop_flip(x, columns).contiguous(memory_format=torch.channels_last)
        logits, loss = forward(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer_step()
        return loss.detach().float() * len(y), (logits.argmax(1) == y).sum()

    for step, start in enumerate(range(0, len(order), batch_size), 1):
        idx = order[start : start + batch_size]
        columns = draws[:, start : start + batch_size] if draws is not None else None
        batch_loss, hits = graph(one_step, idx, columns, fixed=(images, labels)) if graph is not None else one_step(idx, columns)
        loss_sum += batch_loss
        correct += hits
        seen += len(idx)
        if step % check_every == 0 and not torch.isfinite(loss_sum):
            diverged = True
            break
    mean_loss = loss_sum.item() / seen
    diverged = diverged or not math.isfinite(mean_loss)
    return mean_loss, 100.0 * correct.item() / seen, diverged


def forward_loss(
    model: nn.Module, criterion: nn.Module, dtype: torch.dtype, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training step's forward part: logits (B, C) and mean loss of uint8 images ``x`` (B, 3, H, W), labels ``y`` (B,)."""
    x = normalize(x)
    with _autocast(x.device, dtype):
        logits = model(x)
        loss = criterion(logits, y)
    return logits, loss


class Scores(NamedTuple):
    """What one evaluation pass gives."""

    loss: float  # mean over the images
    acc: float  # percent
    confusion: torch.Tensor  # (C, C) int64 counts [true, predicted], on the CPU
    predictions: torch.Tensor  # (N,) uint8: the predicted class of each image, in the split's order, on the CPU


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    criterion: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    batch_size: int = 100,
    dtype: torch.dtype = torch.float32,
) -> Scores:
    """Loss, accuracy (percent), confusion counts and per-image predictions of ``model`` (see :class:`Scores`)."""
    model.eval()
    device = images.device
    loss_sum = torch.zeros((), device=device)
    predicted = torch.empty(len(labels), dtype=torch.uint8, device=device)
    for start in range(0, len(labels), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        with _autocast(device, dtype):
            logits = model(normalize(x))
            loss_sum += criterion(logits, y).float() * len(y)
        predicted[start : start + len(y)] = logits.argmax(1)
    pairs = torch.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
    confusion = pairs.view(num_classes, num_classes).cpu()
    return Scores(loss_sum.item() / len(labels), 100.0 * confusion.trace().item() / len(labels), confusion, predicted.cpu())


@dataclass
class Setup:
    """A run made ready on its device: what ``train`` loops over (the benchmark reuses it)."""

    device: torch.device
    dtype: torch.dtype  # compute dtype: bfloat16 (autocast) or float32
    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # shuffling and augmentation, on the CPU for all devices
    eval_batch: int
    num_classes: int
    # TrainConfig.compile_mode: None (eager), "cuda-graph" (the step replayed through self.graph) or a torch.compile
    # mode, which compiles the forward pass with the loss and the optimiser step apart, backward between them, as a
    # fused run's (cnn.fused.FusedRun).
    compile_mode: str | None = None
    compiled: tuple[Callable, Callable] | None = field(init=False, default=None)  # (forward and loss, optimiser step)
    graph: compiling.StepGraph | None = field(init=False, default=None)  # compile_mode "cuda-graph": the captured step

    def __post_init__(self):
        if self.compile_mode == compiling.CUDA_GRAPH:
            self.graph = compiling.StepGraph()

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, C) and mean loss of uint8 images ``x`` (B, 3, H, W) with labels ``y`` (B,): :func:`forward_loss`."""
        return forward_loss(self.model, self.criterion, self.dtype, x, y)

    def optimizer_step(self) -> None:
        self.optimizer.step()

    def step_functions(self) -> tuple[Callable, Callable]:
        """(forward and loss, optimiser step) for :func:`train_one_epoch`: eager, or compiled with ``compile_mode`` (once)."""
        if not compiling.compiled(self.compile_mode):
            return self.forward_loss, self.optimizer_step
        if self.compiled is None:
            self.compiled = (
                compiling.compile_forward(self.forward_loss, self.compile_mode),
                compiling.compile_step(self.optimizer_step, self.compile_mode),
            )
        return self.compiled


def check_compile(mode: str | None, device: torch.device, instead: str = "--compile auto or off") -> None:
    """Raise DeviceError when compile ``mode`` cannot run on ``device`` (``cuda-graph`` captures CUDA graphs); its message
    offers ``instead``."""
    if mode == compiling.CUDA_GRAPH and device.type != "cuda":
        raise DeviceError(f"--compile cuda-graph captures CUDA graphs, but the device is {device.type}: use a CUDA GPU, or {instead}")


def setup(config: TrainConfig, data: Data) -> Setup:
    """Seed, build the model, loss and optimiser of ``config`` on its device; same seed, same initial weights."""
    device = resolve_device(config.device)
    check_compile(config.compile_mode, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    torch.manual_seed(config.seed)  # initialisation
    num_classes = len(data.classes)
    model = build_model(config.activation, num_classes).to(device, memory_format=torch.channels_last)
    optimizer = lookup(OPTIMIZERS, config.optimizer, "optimizer")(model.parameters(), config.lr)
    if config.compile_mode is not None and device.type == "cuda":
        # A compiled step may be captured as a CUDA graph ("reduce-overhead", "cuda-graph"), which holds no host number that changes
        # from step to step: Adam's step count becomes a device tensor (capturable; SGD keeps none). torch.compile would
        # set it itself on this fresh optimiser; said here, the step does not rest on that.
        for group in optimizer.param_groups:
            if "capturable" in group:
                group["capturable"] = True
    return Setup(
        device=device,
        dtype=resolve_precision(config.precision, device),
        model=model,
        criterion=build_loss(config.loss),
        optimizer=optimizer,
        generator=torch.Generator().manual_seed(config.seed),
        eval_batch=config.eval_batch_size or (100 if device.type == "cpu" else 1000),  # big batches thrash CPU caches
        num_classes=num_classes,
        compile_mode=config.compile_mode,
    )


def order_fingerprint(generator: torch.Generator, n: int) -> str:
    """CRC32 (hex) of the permutation the next ``train_one_epoch`` on ``n`` images will draw from ``generator``.

    It draws from a copy, so ``generator`` is left as it was.
    """
    copy = torch.Generator().set_state(generator.get_state())
    return f"{zlib.crc32(torch.randperm(n, generator=copy).numpy().tobytes()):08x}"


def train(config: TrainConfig, data: Data, on_epoch: Callable[[EpochRow], bool | None] | None = None) -> TrainResult:
    """Train the CNN described by ``config`` on ``data``, evaluating after every epoch.

    Args:
        config: the run's settings.
        data: train and test splits (and a validation split, evaluated too when present).
        on_epoch: called with each epoch's row; returning True stops training.

    Returns:
        A :class:`TrainResult`. Each history row holds ``epoch``, ``train_loss``,
        ``train_acc``, ``val_loss`` and ``val_acc`` (with a validation split), ``test_loss``,
        ``test_acc`` (accuracies in percent) and ``seconds`` (training plus evaluation).

    Example:
        >>> result = train(TrainConfig(epochs=1), load_data("data"))  # doctest: +SKIP
        >>> result.history[-1]["test_acc"]  # doctest: +SKIP
    """
    run = setup(config, data)
    train_set, test_set = data.train.to(run.device), data.test.to(run.device)
    val_set = data.val.to(run.device) if data.val is not None else None
    model, criterion, dtype, n = run.model, run.criterion, run.dtype, run.num_classes
    batch_order = order_fingerprint(run.generator, len(train_set))

    history: list[EpochRow] = []
    predictions: dict[str, list[torch.Tensor]] = {"test": [], **({"val": []} if val_set is not None else {})}
    diverged = stopped = False
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        train_loss, train_acc, diverged = train_one_epoch(
            model,
            criterion,
            run.optimizer,
            train_set.images,
            train_set.labels,
            config.batch_size,
            run.generator,
            config.augment,
            dtype,
            run.step_functions(),
            run.graph,
        )
        row: EpochRow = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc}
        if val_set is not None:
            scores = evaluate(model, criterion, val_set.images, val_set.labels, n, run.eval_batch, dtype)
            row["val_loss"], row["val_acc"] = scores.loss, scores.acc
            predictions["val"].append(scores.predictions)
        scores = evaluate(model, criterion, test_set.images, test_set.labels, n, run.eval_batch, dtype)
        row["test_loss"], row["test_acc"], confusion = scores.loss, scores.acc, scores.confusion
        predictions["test"].append(scores.predictions)
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        if on_epoch is not None and on_epoch(row) and epoch < config.epochs:
            stopped = True
        if diverged or stopped:
            break
    precision = str(dtype).removeprefix("torch.")
    stacked = {split: torch.stack(rows) for split, rows in predictions.items()}
    return TrainResult(history, model, confusion.tolist(), str(run.device), precision, diverged, stopped, batch_order, stacked)
