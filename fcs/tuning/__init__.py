"""Sampler settings measured on a user's own data (``fcs tune``): problems with known answers made from
the items (:mod:`~fcs.tuning.problems`), candidate settings (:mod:`~fcs.tuning.candidates`), scores
(:mod:`~fcs.tuning.scores`), the rule that chooses (:mod:`~fcs.tuning.choice`), the record it writes
(:mod:`~fcs.tuning.record`) and how a run applies one (:mod:`~fcs.tuning.apply`). No Ray here: the job
is :mod:`pipeline.tuning`; :func:`~fcs.tuning.local.tune` runs the same tuner in this process."""

from fcs.tuning import candidates, choice, record, scores
from fcs.tuning.candidates import Candidate, default_candidates, parse_candidate
from fcs.tuning.problems import Problem, Problems, Source, make_problems

__all__ = ["Candidate", "Problem", "Problems", "Source", "candidates", "choice", "default_candidates",
           "make_problems", "parse_candidate", "record", "scores"]
