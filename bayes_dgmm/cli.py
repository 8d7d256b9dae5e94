"""Command line: a thin layer over the library.

``bayes-dgmm truth``    the study data set under its true parameters (the ceiling of inference)
``bayes-dgmm simulate`` draw a data set from a spec and write it as CSV
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bayes_dgmm import __version__
from bayes_dgmm._io import atomic_write, atomic_write_text

log = logging.getLogger("bayes_dgmm")


def _truth(args: argparse.Namespace) -> dict[str, Any]:
    from bayes_dgmm.datasets import load_icbinb
    from bayes_dgmm.metrics import layer_aris, n_occupied

    data = load_icbinb()
    params = data.params
    loglik = params.score(data.X)
    pred = params.paths[params.predict(data.X)]
    aris = layer_aris(data.labels, pred, params.n_components)
    result = {
        "data": "icbinb-sec3 (Selosse et al. 2020, sec. 3)",
        "n_samples": int(data.X.shape[0]),
        "n_features": params.n_features,
        "n_components": list(params.n_components),
        "n_factors": list(params.n_factors),
        "n_paths": params.n_paths,
        "true_loglik": loglik,
        "bayes_classifier_ari": aris,
        "occupied_paths": n_occupied(params.predict(data.X), params.n_paths),
    }
    lines = [
        "Study data set icbinb-sec3 under its true parameters",
        f"  N = {result['n_samples']}, J = {params.n_features}, "
        f"G = {params.n_components}, R = {params.n_factors}, {params.n_paths} paths",
        f"  total log-likelihood: {loglik:.2f}",
        "  Bayes classifier ARI: " + ", ".join(f"{k} {v:.3f}" for k, v in aris.items()),
        f"  occupied paths: {result['occupied_paths']} of {params.n_paths}",
    ]
    _emit(args, "\n".join(lines))
    if args.out is not None:
        atomic_write_text(Path(args.out) / "truth.json", json.dumps(result, indent=2))
        _emit(args, f"wrote {Path(args.out) / 'truth.json'}")
    return result


def _simulate(args: argparse.Namespace) -> dict[str, Any]:
    from bayes_dgmm.datasets import icbinb_like_params
    from bayes_dgmm.params import DGMMParams
    from bayes_dgmm.simulate import simulate
    from bayes_dgmm.spec import load_spec

    spec = load_spec(args.spec)
    rng = np.random.default_rng(args.seed)
    if spec.name == "icbinb-sec3":
        params = icbinb_like_params(rng)
    else:
        n_features = args.n_features or spec.n_features or spec.n_factors[0] + 2
        params = DGMMParams.random(n_features, spec.n_components, spec.n_factors, rng)
    sim = simulate(params, args.n_samples, random_state=rng)
    out = Path(args.out)
    header = ",".join(f"x{j + 1}" for j in range(params.n_features))
    atomic_write(
        out / "X.csv",
        lambda p: np.savetxt(p, sim.X, delimiter=",", header=header, comments="", fmt="%.17g"),
    )
    lab_header = ",".join([f"layer{l + 1}" for l in range(params.n_layers)] + ["path"])
    labels = np.column_stack([sim.labels, sim.paths])
    atomic_write(
        out / "labels.csv",
        lambda p: np.savetxt(p, labels, delimiter=",", header=lab_header, comments="", fmt="%d"),
    )
    params.to_json(out / "params.json")
    _emit(args, f"wrote {sim.X.shape[0]} x {sim.X.shape[1]} data, labels and params to {out}")
    return {"out": str(out)}


def _emit(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayes-dgmm",
        description="Deep Gaussian mixture models: simulate, fit, diagnose, compare.",
    )
    parser.add_argument("--version", action="version", version=f"bayes-dgmm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("truth", help="the study data under its true parameters")
    p.add_argument("--out", type=Path, default=None, help="folder for truth.json")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=_truth)

    p = sub.add_parser("simulate", help="draw a data set from a model spec, write CSV")
    p.add_argument("--spec", default="icbinb-sec3", help="shipped spec name or TOML path")
    p.add_argument("--n-samples", type=int, default=4000)
    p.add_argument(
        "--n-features",
        type=int,
        default=None,
        help="number of features when the spec does not fix it",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        args.func(args)
    except (ValueError, TypeError, FileNotFoundError, OSError) as exc:
        print(f"bayes-dgmm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
