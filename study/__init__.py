"""Optuna studies of the notebook's CNN: search space and design, objective, runner, record and model loading.

Modules: ``config`` (flags -> StudyConfig), ``space`` (search space, paired grid, suggest_config),
``samplers`` (sampler and pruner registries), ``objective`` (one trial), ``runner`` (a whole study),
``progress`` (what it prints), ``record`` (the settings and trial records the report reads),
``storage`` (opening databases), ``load`` (trained models), ``notes`` (what optuna-dashboard shows: the objective's
name, the study's and each trial's note), ``run`` (the command).
"""

from study.load import load_model

__all__ = ["load_model"]
