"""Entropy coding: priors, the entropy model and its CDF tables, the entropy coders, string framing and the file container."""
