"""Inference routes of :class:`~bayes_dgmm.bayes.BayesianDeepGaussianMixture`."""
