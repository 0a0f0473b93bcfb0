"""In a real kernel: ``%%deploy --secret --env``, the smoke test's traceback, and a saved notebook holding no token."""

from __future__ import annotations

import hashlib
import os

import nbformat
from nbclient import NotebookClient

SECRET = "s3cr3t-" + hashlib.sha256(os.urandom(16)).hexdigest()[:24]


def test_a_saved_notebook_holds_no_token_and_no_secret(manager, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DEPLOY_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("JUPYTER_DEPLOY_URL", raising=False)
    monkeypatch.delenv("JUPYTER_DEPLOY_TOKEN", raising=False)
    manager.client().set_secret("NB_DB_URL", SECRET)
    token_file = tmp_path / "token.txt"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in [
        "%load_ext jupyter_deploy",
        f"import jupyter_deploy\njupyter_deploy.login({manager.url!r}, 'admin', {manager.password!r})",
        "import pandas as pd\nX = pd.DataFrame({'a': [1.0, 2.0, 3.0], 'b': [1.0, 0.0, 2.0]})",
        "%%deploy nbsecret --sample X --secret NB_DB_URL --env MODE=prod\n"
        "def facts(data: pd.DataFrame) -> dict:\n"
        "    import hashlib, os\n"
        "    return {'sha': hashlib.sha256(os.environ['NB_DB_URL'].encode()).hexdigest()[:12], "
        "'mode': os.environ['MODE']}",
        f"dep = _\nopen({str(token_file)!r}, 'w').write(dep.token)\nprint(dep.connect().facts(X))\ndep",
        "%%deploy nbsecret --sample X\n"
        "def facts(data: pd.DataFrame) -> dict:\n"
        "    ratios = [a / b for a, b in zip(data['a'], data['b'])]\n"
        "    return {'ratios': ratios}",
        "print(jupyter_deploy.connect('nbsecret').facts(X))",
    ]]
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    saved = tmp_path / "executed.ipynb"
    nbformat.write(nb, saved)
    text = saved.read_text()
    token = token_file.read_text()

    assert token.startswith("jdt_") and token not in text
    assert SECRET not in text
    cells = nb.cells
    errors = [(i, o) for i, c in enumerate(cells) for o in c.outputs if o.output_type == "error"]
    assert [i for i, _ in errors] == [5], errors
    # The card: masked token, a copy control fed only in the live page, what the sample gave.
    card = "".join(o.get("data", {}).get("text/html", "") for o in cells[3].outputs)
    assert "jupyter-deploy-copy" in card and token[-4:] in card and "<script" not in card
    assert "facts(sample) -&gt; {&quot;sha&quot;: &quot;" in card and "&quot;mode&quot;: &quot;prod&quot;" in card
    expected = hashlib.sha256(SECRET.encode()).hexdigest()[:12]
    assert f"{{'sha': '{expected}', 'mode': 'prod'}}" in cells[4].outputs[0].text

    # The broken redeploy fails on its sample with the cell's own line, and the first version still answers.
    (_, err) = errors[0]
    assert err.ename == "SmokeTestFailed"
    shown = "\n".join(err.traceback)
    assert "ratios = [a / b for a, b in zip(data['a'], data['b'])]" in shown and "line 2, in facts" in shown
    assert "ZeroDivisionError: float division by zero" in shown and "jupyter_deploy_runner" not in shown
    assert f"'sha': '{expected}'" in cells[6].outputs[0].text
