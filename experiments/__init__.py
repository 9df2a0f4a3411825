"""Thin entry points over the mp_jax library: experiments, plots and reports."""
