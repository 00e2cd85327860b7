"""The calibration benchmark: babysit's verdicts against what training really does.

``python -m benchmarks.calibration`` (see ``__main__``) trains every
calibration recipe over grids of learning rates, regularization strengths and
initializations with several seeds (the ground truth, :mod:`.truth`), runs
each gate on the same settings (:mod:`.gates`) and scores the gates against
the truth (:mod:`.score`), writing the agreement tables into
``benchmarks/README.md``. It is a benchmark, not a test: it takes tens of
minutes on two cores.
"""
