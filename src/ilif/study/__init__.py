"""The study of ``docs/results.md``: the paper's claims tested at CPU scale on real data.

``python -m ilif.study`` (``make results``) runs every sweep of the study (:mod:`ilif.study.plan`,
one ``ilif sweep`` per part and seed, finished cells skipped, so it resumes) and then writes
``docs/results.md`` with its figures in ``docs/figures/results/`` from the collected
``results.json`` files (:mod:`ilif.study.write`). No number of the document is typed in by hand:
tables, figures and the sentences comparing results are generated from the results files.
"""

from ilif.study.plan import PARTS, Part, study_jobs
from ilif.study.write import write_results_doc

__all__ = ["PARTS", "Part", "study_jobs", "write_results_doc"]
