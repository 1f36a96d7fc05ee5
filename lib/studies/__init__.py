"""Measurement code of the hypotheses: each module computes one hypothesis's study;
the claims stay in hypotheses/."""
