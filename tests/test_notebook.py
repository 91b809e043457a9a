"""The tour notebook (notebooks/tour.ipynb) runs top to bottom, in the venv's own interpreter, without a cell error.

nbclient starts the ``python3`` kernel; jupyter_client launches a kernelspec whose command is ``python`` with
``sys.executable``, so the kernel runs in this environment (checked by an extra cell appended in memory). The kernel's
working folder is ``notebooks/``, as when a reader opens the notebook there; the notebook writes only under a
temporary folder of its own. Jupyter's, IPython's and matplotlib's per-user folders go to tmp_path.
"""

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "tour.ipynb"
TIMEOUT_S = 300  # per cell; the whole notebook takes about 2 minutes on two CPU cores


def test_tour_notebook_runs(tmp_path, monkeypatch):
    for var, sub in (
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTER_DATA_DIR", "data"),
        ("IPYTHONDIR", "ipython"),
        ("MPLCONFIGDIR", "mpl"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))
    client = nbclient.NotebookClient(
        nb,
        timeout=TIMEOUT_S,
        kernel_name="python3",
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    kernel_prefix = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream").strip()
    assert kernel_prefix == sys.prefix  # the kernel runs in this environment (the venv), not another Python
