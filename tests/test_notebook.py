"""examples/track_archive.ipynb runs top to bottom on a small archive (so it cannot rot).

The kernel is this interpreter: a kernel spec written on the fly points at
``sys.executable``, so neither a user-installed ``python3`` kernel nor another
environment is picked up.
"""

import json
import os
import sys

import pytest

from magtrack_dask.jobs import job_status
from magtrack_dask.zlut import save_zlut

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "examples", "track_archive.ipynb")


def kernel_manager(folder):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = os.path.join(folder, "kernels", "magtrack-dask-test")
    os.makedirs(spec)
    with open(os.path.join(spec, "kernel.json"), "w") as f:
        json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                   "display_name": "magtrack-dask test", "language": "python"}, f)
    return KernelManager(kernel_name="magtrack-dask-test",
                         kernel_spec_manager=KernelSpecManager(kernel_dirs=[os.path.dirname(spec)]))


def run_notebook(nb, folder) -> list[str]:
    """Run every cell of ``nb`` in ``folder``; return its errors, ``"cell i: Name: message"``.

    ``allow_errors``: every cell runs and an error stays in its cell's outputs,
    where it is found (without it ``execute()`` raises at the first error).
    """
    client = nbclient.NotebookClient(nb, km=kernel_manager(str(folder)), timeout=240, allow_errors=True,
                                     resources={"metadata": {"path": str(folder)}})
    client.execute()
    return [f"cell {i}: {o.ename}: {o.evalue}" for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.outputs if o.output_type == "error"]


def test_errors_of_a_notebook_are_found(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0"),
                                         nbformat.v4.new_code_cell("print(x)")])
    assert run_notebook(nb, tmp_path) == ["cell 1: ZeroDivisionError: division by zero"]
    assert nb.cells[2].outputs[0].text == "1\n"  # the cells after an error run too


def test_notebook_runs_on_an_archive(archives, zlut, tmp_path, monkeypatch):
    save_zlut(tmp_path / "zlut.zarr", zlut)
    out = tmp_path / "out"
    monkeypatch.setenv("MAGTRACK_ARCHIVE", archives["tyx"])
    monkeypatch.setenv("MAGTRACK_ZLUT", str(tmp_path / "zlut.zarr"))
    monkeypatch.setenv("MAGTRACK_OUT", str(out))
    monkeypatch.setenv("MAGTRACK_WORKERS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    errors = run_notebook(nb, tmp_path)
    assert not errors, errors
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "dashboard: http" in text  # the dashboard link, printed and as a link
    assert any('<a href="http' in o.get("data", {}).get("text/html", "") for o in outputs)
    assert "100.0% 3/3 chunks" in text  # the progress bar
    assert "3 chunks computed" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # the Z-LUT, the traces, the x-y scatter
    assert job_status(out / "results.zarr")["complete"]
    assert sorted(os.listdir(out)) == ["results.zarr", "traces.png", "xy.png", "zlut.png"]
