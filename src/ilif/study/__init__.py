"""The study of ``docs/results.md``: the paper's claims tested at CPU scale on real data.

``python -m ilif.study`` (``make results``) runs every sweep of the study (:mod:`ilif.study.plan`,
one ``ilif sweep`` per part and seed, finished cells skipped, so it resumes), exports small
per-run summaries to ``docs/results-data/`` (:mod:`ilif.study.load`) and writes
``docs/results.md`` with its figures in ``docs/figures/results/`` from them
(:mod:`ilif.study.write`, :mod:`ilif.study.sections`): the primary endpoints
(:mod:`ilif.study.endpoints`, statistics in :mod:`ilif.study.stats`), step-0 baselines,
trajectories and energy. No number of the document is typed in by hand.
"""

from ilif.study.plan import PARTS, Part, study_jobs
from ilif.study.write import write_results_doc

__all__ = ["PARTS", "Part", "study_jobs", "write_results_doc"]
