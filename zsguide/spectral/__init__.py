"""The spectral engine: closed-form output laws of the samplers under the Gaussian surrogate (theory.md §3-5)."""
