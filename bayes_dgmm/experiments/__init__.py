"""The study's experiments and the comparison of inference methods, as library code.

- :mod:`~bayes_dgmm.experiments.study`: sec. 3.2 and 3.3 of Selosse et al. (2020);
- :mod:`~bayes_dgmm.experiments.reproduce`: tables, figures and ``report.md`` for them;
- :mod:`~bayes_dgmm.experiments._store`: resumable runs (one JSON file per finished run).
"""

from bayes_dgmm.experiments._store import RunStore, run_all
from bayes_dgmm.experiments.study import ExperimentSettings, run_section32, run_section33

__all__ = ["ExperimentSettings", "RunStore", "run_all", "run_section32", "run_section33"]
