"""Pytest plugin for benchmarks/mutation_probe.py (issue 23, item 5): applies one 1% mutation in memory.

Loaded with ``-p benchmarks.mutation_plugin``; the mutation is named by the environment variable
``ZSGUIDE_MUTATION`` (unset or empty: no mutation, the baseline). Nothing on disk is edited. Names:

- ``<function>:<k>``: output ``k`` (0-based) of a shared coefficient function multiplied by 1.01, the others
  untouched (``<function>`` one of :data:`FUNCTIONS`; a function returning one value has only ``:0``);
- ``DiffPIR.rho``: the static method's value multiplied by 1.01;
- ``<Class>.step``: the sampler's ``step`` alone, its returned ``x_{t-1}`` multiplied by 1.01 (``x0_hat`` and the
  closed form ``closed_form_step`` untouched).

A function is replaced on its defining module and on every loaded ``zsguide`` module that holds its own reference
(``from ... import name``); every ``zsguide`` submodule is imported first so that none is missed.
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
import sys

FACTOR = 1.01

# name -> (defining module, number of outputs; 1 means a single value, not a tuple)
FUNCTIONS = {
    "ddrm_coefficients": ("zsguide.samplers.ddrm", 4),
    "ddnm_coefficients": ("zsguide.samplers.ddnm", 3),
    "pigdm_coefficients": ("zsguide.samplers.pigdm", 2),
    "diffpir_coefficients": ("zsguide.samplers.diffpir", 5),
    "dps_gain": ("zsguide.samplers.dps", 1),
    "ddim_coefficients": ("zsguide.diffusion.ddim", 2),
}
STEPS = {
    "DDRM": "zsguide.samplers.ddrm",
    "DDNMPlus": "zsguide.samplers.ddnm",
    "PiGDM": "zsguide.samplers.pigdm",
    "DPS": "zsguide.samplers.dps",
    "DiffPIR": "zsguide.samplers.diffpir",
}


def all_mutations() -> list[str]:
    names = [f"{f}:{k}" for f, (_, n) in FUNCTIONS.items() for k in range(n)]
    return names + ["DiffPIR.rho"] + [f"{c}.step" for c in STEPS]


def _import_all() -> None:
    import zsguide

    for info in pkgutil.walk_packages(zsguide.__path__, "zsguide."):
        if info.name.endswith("__main__"):  # the command line: runs on import
            continue
        try:
            importlib.import_module(info.name)
        except Exception:  # an optional dependency missing: that module cannot hold a reference then
            pass


def _scale_output(fn, k: int, n: int):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        if n == 1:
            return out * FACTOR
        out = list(out)
        out[k] = out[k] * FACTOR
        return tuple(out)

    wrapped.__zsguide_mutated__ = True  # type: ignore[attr-defined]
    return wrapped


def apply(name: str) -> list[str]:
    """Apply mutation ``name``; returns the patched places (module.attribute), for the report."""
    _import_all()
    patched = []
    if name.endswith(".step") or name == "DiffPIR.rho":
        cls_name, attr = name.split(".")
        module = importlib.import_module(STEPS[cls_name])
        cls = getattr(module, cls_name)
        if attr == "rho":
            orig = cls.__dict__["rho"].__func__
            cls.rho = staticmethod(_scale_output(orig, 0, 1))
        else:
            orig = cls.__dict__["step"]

            @functools.wraps(orig)
            def step(self, *args, **kwargs):
                x_prev, x0 = orig(self, *args, **kwargs)
                return x_prev * FACTOR, x0

            cls.step = step
        patched.append(f"{STEPS[cls_name]}.{cls_name}.{attr}")
        return patched
    fname, k = name.split(":")
    modname, n = FUNCTIONS[fname]
    orig = getattr(importlib.import_module(modname), fname)
    wrapped = _scale_output(orig, int(k), n)
    for mname, module in list(sys.modules.items()):
        if (mname == "zsguide" or mname.startswith("zsguide.")) and getattr(module, fname, None) is orig:
            setattr(module, fname, wrapped)
            patched.append(f"{mname}.{fname}")
    return patched


def pytest_configure(config) -> None:
    name = os.environ.get("ZSGUIDE_MUTATION", "")
    if name:
        patched = apply(name)
        if not patched:
            raise RuntimeError(f"mutation {name!r} patched nothing")
        config._zsguide_mutation = (name, patched)


def pytest_report_header(config):
    info = getattr(config, "_zsguide_mutation", None)
    if info:
        return f"zsguide mutation {info[0]} x{FACTOR}: patched {', '.join(info[1])}"
    return "zsguide mutation: none (baseline)"
