"""``train``: the recipe's training run, watched, logged and diagnosed.

* :mod:`~babysit.diagnostics.train.trainer`: the run (the engine's loop plus
  monitor, checkpoint, progress and signal callbacks), the run log;
* :mod:`~babysit.diagnostics.train.resume`: a run log read back into a run;
* :mod:`~babysit.diagnostics.train.history`: what a run records;
* :mod:`~babysit.diagnostics.train.verdicts`: what the history says (findings);
* :mod:`~babysit.diagnostics.train.ensemble`: ``--ensemble``: independent members,
  checkpoint ensembles and the comparison.
"""

from babysit.diagnostics.train.ensemble import train_ensemble
from babysit.diagnostics.train.history import History
from babysit.diagnostics.train.resume import recipe_for_resume
from babysit.diagnostics.train.trainer import ProgressEvent, Trainer, TrainingInterrupted, train
from babysit.diagnostics.train.verdicts import (CHECKS, UPDATE_RATIO_HIGH, UPDATE_RATIO_LOW,
                                                result_from_run_log)

__all__ = ["train", "train_ensemble", "Trainer", "TrainingInterrupted", "ProgressEvent", "History",
           "recipe_for_resume", "result_from_run_log", "CHECKS", "UPDATE_RATIO_HIGH",
           "UPDATE_RATIO_LOW"]
