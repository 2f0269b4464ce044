"""Samplers and pruners by name: plain name -> constructor registries."""

from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from study.space import SearchSpace
from study.storage import dead

# name -> sampler(space, repeats, seed, stream). Only "grid" runs the paired design (activation x loss x lr x
# replicate); the others hunt for the best configuration, and their comparisons are observational. Samplers that
# draw at random seed themselves with seed + stream, so that a resumed run or another worker does not replay the
# same draws. The grid's order is the same in every process (trial numbers map to grid points by it): replicate-major,
# see DesignGridSampler.
SAMPLERS: dict[str, Callable[[SearchSpace, int, int, int], optuna.samplers.BaseSampler]] = {
    "grid": lambda space, repeats, seed, stream: DesignGridSampler(space.grid(repeats)),
    "tpe": lambda space, repeats, seed, stream: optuna.samplers.TPESampler(seed=seed + stream),
    "random": lambda space, repeats, seed, stream: optuna.samplers.RandomSampler(seed=seed + stream),
    "qmc": lambda space, repeats, seed, stream: optuna.samplers.QMCSampler(seed=seed + stream),
}

# name -> pruner(epochs, min_epochs). Pruners compare trials at the same epoch, and none of them stops a
# trial before it has run min_epochs epochs.
PRUNERS: dict[str, Callable[[int, int], optuna.pruners.BasePruner]] = {
    "median": lambda epochs, min_epochs: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=min_epochs),
    "hyperband": lambda epochs, min_epochs: optuna.pruners.HyperbandPruner(
        min_resource=min(min_epochs, epochs), max_resource=epochs, reduction_factor=3
    ),
    "successive-halving": lambda epochs, min_epochs: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=min(min_epochs, epochs), reduction_factor=3
    ),
    "none": lambda epochs, min_epochs: optuna.pruners.NopPruner(),
}
AUTO_PRUNER = {"grid": "none"}  # --pruner auto: a design compares pairs at equal epochs, so it prunes nothing; else median


GRID_ORDER = "replicate-major"  # a trial's grid_id means a point of this order (earlier releases shuffled the grid)


class DesignGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler in a fixed replicate-major order, for the project's ask/tell driver.

    A new trial runs the lowest grid point that no trial holds (finished, running or queued), in
    a fixed replicate-major order: replicate 0 of every learning rate, loss and activation first,
    then replicate 1, and so on, so a study cut short by ``--trials`` or ``--timeout`` holds whole
    replicates of whole blocks rather than random holes. Processes that ask at the same moment
    take the lowest free points in the order of their trial numbers. A trial that carries its
    own parameters or ``grid_id`` (queued again after a crash: :func:`study.storage.queue_again`)
    or ``fixed_params`` (the enqueued baseline) keeps them. ``after_trial`` never stops the
    study: the driver counts finished trials itself, and Optuna allows ``study.stop()`` only
    inside ``study.optimize``.
    """

    def __init__(self, search_space: dict[str, list]):
        super().__init__(search_space, seed=0)
        # The sequential design sets this: the grid ids trials may run now (its rounds); None: every point.
        self.allowed: Callable[[optuna.Study], set[int]] | None = None
        names = self._param_names  # sorted: activation, loss, lr, replicate
        axes = [names.index(name) for name in ("replicate", "lr", "loss", "activation") if name in names]
        position = {name: {value: i for i, value in enumerate(self._search_space[name])} for name in names}
        self._all_grids.sort(key=lambda point: tuple(position[names[axis]][point[axis]] for axis in axes))
        self._index = {point: i for i, point in enumerate(self._all_grids)}

    def before_trial(self, study, trial) -> None:
        attrs = trial.system_attrs
        if "fixed_params" in attrs or ("grid_id" in attrs and attrs.get("grid_order") == GRID_ORDER):
            return
        grid_id = self.index(trial.params)  # a trial queued again with its parameters runs exactly them
        if grid_id is None:
            taken, choosing, _ = self._holders(study)
            allowed = self.allowed(study) if self.allowed is not None else None
            free = [g for g in range(len(self._all_grids)) if g not in taken and (allowed is None or g in allowed)]
            # The lowest free point; trials of other processes choosing at this moment (asked, no point yet) take the
            # next ones, in order of their numbers, so that none draws the same point. -1: every point is finished,
            # running or queued (the driver fails that trial untrained).
            rank = sum(number < trial.number for number in choosing)
            grid_id = free[rank] if rank < len(free) else -1
        study._storage.set_trial_system_attr(trial._trial_id, "search_space", self._search_space)
        study._storage.set_trial_system_attr(trial._trial_id, "grid_order", GRID_ORDER)
        study._storage.set_trial_system_attr(trial._trial_id, "grid_id", grid_id)

    def index(self, params: dict) -> int | None:
        """The grid id of a trial's parameters, or None when they are not (all) a point of this grid."""
        key = tuple(params.get(name) for name in self._param_names)
        return self._index.get(key)

    def points(self) -> list[dict]:
        """Every grid point as ``{parameter: value}``, in grid-id order."""
        return [dict(zip(self._param_names, point, strict=True)) for point in self._all_grids]

    def finished_ids(self, study: optuna.Study) -> set[int]:
        """Grid ids of the points a finished (complete or pruned) trial holds."""
        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        ids = (self._grid_id(t) for t in study._storage.get_all_trials(study._study_id, deepcopy=False, states=finished))
        return {g for g in ids if g is not None and g >= 0}

    def _grid_id(self, t: optuna.trial.FrozenTrial) -> int | None:
        grid_id = self.index(t.params)
        attrs = t.system_attrs  # another process may be writing them this instant: any may be missing
        if grid_id is None and attrs.get("grid_order") == GRID_ORDER and self._same_search_space(attrs.get("search_space", {})):
            grid_id = attrs.get("grid_id")
        return grid_id

    def _holders(self, study: optuna.Study) -> tuple[set[int], set[int], set[int]]:
        """Grid points that a trial holds (finished, running or queued), the numbers of running trials with no point yet,
        and the grid points of queued (waiting) trials, which the next ``study.ask()`` of any process takes first.

        A trial with no point left by a process killed inside ``study.ask()`` (``storage.dead``: its
        process is gone) is not choosing one: it would hold back a point (any process fails it and
        queues it again).

        A trial's point is read from its parameters when it has them (so trials of an earlier
        release, whose grid ids followed another order, count right), else from its grid id.
        """
        taken, choosing, queued = set(), set(), set()
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
                continue
            grid_id, attrs = self._grid_id(t), t.system_attrs
            if grid_id is not None and grid_id >= 0:
                taken.add(grid_id)
                if t.state == TrialState.WAITING:
                    queued.add(grid_id)
            elif t.state == TrialState.RUNNING and "grid_id" not in attrs and "fixed_params" not in attrs and not dead(t):
                choosing.add(t.number)
        return taken, choosing, queued

    def sample_independent(self, study, trial, param_name, param_distribution):
        if trial.system_attrs.get("grid_id") == -1:
            return self._all_grids[0][self._param_names.index(param_name)]  # a surplus trial is never trained
        return super().sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        return None


def drop_surplus(study: optuna.Study, trial: optuna.Trial) -> bool:
    """End, untrained, a trial the grid had no free point for (another process took the last one at the same moment).

    It is failed (Optuna cannot delete a trial) and marked ``surplus``: the progress, the closing
    lines and the report count it apart from failures. Returns whether the trial was surplus.
    """
    if study._storage.get_trial_system_attrs(trial._trial_id).get("grid_id") != -1:
        return False
    trial.set_user_attr("surplus", True)
    study.tell(trial, state=TrialState.FAIL)
    return True
