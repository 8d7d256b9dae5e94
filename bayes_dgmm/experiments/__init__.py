"""The study's experiments, the comparison of inference methods, and the command line.

- :mod:`~bayes_dgmm.experiments.datasets`: the study data and generators;
- :mod:`~bayes_dgmm.experiments.study`: sec. 3.2 and 3.3 of Selosse et al. (2020);
- :mod:`~bayes_dgmm.experiments.reproduce`: tables, figures and ``report.md`` for them;
- :mod:`~bayes_dgmm.experiments.methods`, :mod:`~bayes_dgmm.experiments.compare`: the
  method comparison;
- :mod:`~bayes_dgmm.experiments._store`: resumable runs (one JSON file per finished run);
- :mod:`~bayes_dgmm.experiments.plots`, :mod:`~bayes_dgmm.experiments.report`: figures and
  reports; :mod:`~bayes_dgmm.experiments.cli`: the ``bayes-dgmm`` command.
"""

from typing import TYPE_CHECKING

from bayes_dgmm._lazy import lazy_getattr

# Imported on first use so that the command line's start-up stays light (no scikit-learn).
_LAZY = {
    "ExperimentSettings": "bayes_dgmm.experiments.study",
    "RunStore": "bayes_dgmm.experiments._store",
    "run_all": "bayes_dgmm.experiments._store",
    "run_section32": "bayes_dgmm.experiments.study",
    "run_section33": "bayes_dgmm.experiments.study",
}

if TYPE_CHECKING:
    from bayes_dgmm.experiments._store import RunStore, run_all
    from bayes_dgmm.experiments.study import ExperimentSettings, run_section32, run_section33


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["ExperimentSettings", "RunStore", "run_all", "run_section32", "run_section33"]
