"""The study data and generators; they live in :mod:`bayes_dgmm.experiments.datasets`."""

from bayes_dgmm.experiments.datasets import (
    ICBINB_DESIGN,
    DGMMDataset,
    icbinb_like_params,
    index_to_study_path,
    load_icbinb,
    make_dgmm_data,
    make_icbinb_like,
    params_from_study_json,
    study_path_to_index,
)

__all__ = [
    "ICBINB_DESIGN",
    "DGMMDataset",
    "icbinb_like_params",
    "index_to_study_path",
    "load_icbinb",
    "make_dgmm_data",
    "make_icbinb_like",
    "params_from_study_json",
    "study_path_to_index",
]
