"""Optuna studies of the notebook's CNN: search space and design, objective, runner, record and model loading."""

from study.load import load_model
from study.space import BASELINE, SearchSpace, suggest_config

__all__ = ["BASELINE", "SearchSpace", "load_model", "suggest_config"]
