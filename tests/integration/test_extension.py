"""The %flowblock magics in a real IPython kernel, against ``flowblock demo`` running.

One demo stack for the session and one kernel of alice (the demo's researcher) for the
module; the kernel knows only the gateway's address and alice's wallet, as a spawned
notebook server would. Each test asks for computations of its own.
"""

from __future__ import annotations

import ast
import json
import re
import time

import pytest

from flowblock.identity import wallet_path
from flowblock.ledger import Gateway
from flowblock.stack.demo import CONSENTING, synthetic_vitals
from flowblock.testing.fixtures import IPythonKernel

CONSENTING_ROWS = synthetic_vitals().iloc[: int(300 * CONSENTING)]


@pytest.fixture(scope="module")
def hospital_admin(demo_stack):
    """The Hospital's admin, who approves and denies what the rules leave pending."""
    wallet = wallet_path(demo_stack.data_dir, "Hospital", "admin")
    with Gateway.connect(demo_stack.gateway, wallet) as gateway:
        yield gateway.get_network("flowblock").get_contract("flowblock")


def ok(kernel: IPythonKernel, code: str, **kw) -> str:
    """Run a cell that must succeed; returns its value's text."""
    done = kernel.run(code, **kw)
    assert done.status == "ok", done.outputs
    return done.result


def usage_error(kernel: IPythonKernel, code: str) -> str:
    """Run a cell that must fail with one UsageError line; returns that line."""
    done = kernel.run(code)
    assert done.status == "error", done.outputs
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("UsageError: "), done.outputs
    assert "Traceback" not in json.dumps(done.outputs)
    return lines[0].removeprefix("UsageError: ")


def value(kernel: IPythonKernel, code: str):
    """The Python value of a cell's result (a literal)."""
    return ast.literal_eval(ok(kernel, code))


def token_of(kernel: IPythonKernel, name: str) -> str:
    return value(kernel, f"{name}.token_id")


def wait_status(admin, token_id: str, *statuses: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (token := json.loads(admin.evaluate("GetToken", token_id)))["status"] not in statuses:
        assert time.monotonic() < deadline, token["status"]
        time.sleep(0.2)
    return token


# -- whoami, methods -----------------------------------------------------------------------


def test_the_extension_connects_from_the_environment(researcher_kernel):
    shown = ok(researcher_kernel, "%flowblock whoami")
    assert "'name': 'alice'" in shown
    assert "'organisation': 'University'" in shown
    assert "'role': 'researcher'" in shown


def test_methods_is_the_catalogue_as_a_table_and_one_method_shows_how_to_call_it(
    researcher_kernel,
):
    ok(researcher_kernel, "m = %flowblock methods")
    assert value(researcher_kernel, "type(m).__name__, m.loc['mean', 'output']") == (
        "DataFrame",
        "value",
    )
    assert ok(researcher_kernel, "m.loc['bar-chart', 'disclosure']") == "'chart'"
    assert "column*" in ok(researcher_kernel, "m.loc['histogram', 'parameters']")
    one = researcher_kernel.run("%flowblock methods histogram")
    text = one.result
    assert "histogram 1.0: Counts of a numeric column" in text
    assert "bins (integer)" in text and "column (string, required)" in text
    assert "%flowblock compute histogram --dataset vitals --param column=<string>" in text


# -- compute: tables, the cell magic, figures, metrics --------------------------------------


def test_compute_returns_a_traced_dataframe_and_shows_live_status(researcher_kernel):
    done = researcher_kernel.run(
        "r = %flowblock compute mean --dataset vitals --param column=systolic "
        "--param group_by='[\"smoker\"]'\nr"
    )
    assert done.status == "ok", done.outputs
    statuses = done.displays("text/plain")
    assert any("queued at Hospital's executor" in s for s in statuses)
    assert "done, cohort of 210" in statuses[-2]  # the status line's last state, then r
    assert ok(researcher_kernel, "type(r).__name__, r.cohort_size") == "('ResultFrame', 210)"
    assert ok(researcher_kernel, "import pandas as pd; isinstance(r, pd.DataFrame)") == "True"
    means = value(researcher_kernel, "r.set_index('smoker')['mean'].to_dict()")
    expected = CONSENTING_ROWS.groupby("smoker")["systolic"].mean()
    assert means[True] == pytest.approx(expected[True])
    assert means[False] == pytest.approx(expected[False])
    token_id = token_of(researcher_kernel, "r")
    assert re.fullmatch(r"[0-9a-f]{64}", token_id)
    # Derived frames are plain: the provenance belongs to the released table only.
    assert ok(researcher_kernel, "type(r.head(1)).__name__") == "'DataFrame'"


def test_the_cell_magic_takes_its_parameters_as_yaml_or_json(researcher_kernel):
    ok(
        researcher_kernel,
        "%%flowblock compute histogram --dataset vitals\n"
        "column: age\nbins: 4\nwhere:\n  - [sex, '==', M]\n",
    )
    ok(researcher_kernel, "h = _")
    men = int((CONSENTING_ROWS["sex"] == "M").sum())
    bins, total, cohort = value(researcher_kernel, "len(h), int(h['count'].sum()), h.cohort_size")
    assert (bins, cohort) == (4, 5 * round(men / 5))  # the size is released rounded
    # Ages are spread evenly, so no cell is small enough to withhold; each may be rounded.
    assert value(researcher_kernel, "bool(h['count'].notna().all())") is True
    assert abs(total - men) <= 4 * 5
    ok(
        researcher_kernel,
        '%%flowblock compute std --dataset vitals --param column=diastolic\n{"group_by": ["sex"]}',
    )
    assert ok(researcher_kernel, "sorted(_['sex'])") == "['F', 'M']"


def test_a_flow_ends_in_a_figure_and_an_approved_model_in_metrics(
    researcher_kernel, hospital_admin
):
    ok(researcher_kernel, "c = %flowblock compute count -d vitals -p group_by='[\"diagnosis\"]'")
    counts = token_of(researcher_kernel, "c")
    job = ok(
        researcher_kernel,
        "j = %flowblock compute bar-chart --dataset vitals -p column=diagnosis --no-wait\nj",
    )
    assert "bar-chart on vitals" in job and "PENDING" in job
    chart = token_of(researcher_kernel, "j")
    hospital_admin.submit("Approve", chart)
    wait_status(hospital_admin, chart, "DONE")
    shown = researcher_kernel.run(f"fig = %flowblock result {chart[:10]}\nfig")
    assert shown.status == "ok", shown.outputs
    assert shown.displays("image/png"), "the figure is shown as an image"
    assert value(
        researcher_kernel,
        "from matplotlib.figure import Figure\n"
        "isinstance(fig, Figure), type(fig).__name__, fig.cohort_size, "
        "[t.get_text() for t in fig.axes[0].get_xticklabels()]",
    ) == (True, "ResultFigure", 210, sorted(CONSENTING_ROWS["diagnosis"].unique()))
    # The flow: a chart of the earlier count, with the count as its input token.
    ok(
        researcher_kernel,
        f"j = %flowblock compute chart-of-result -d vitals --input {counts[:12]} "
        "-p label=diagnosis --no-wait",
    )
    flow = token_of(researcher_kernel, "j")
    if wait_status(hospital_admin, flow, "PENDING", "DONE")["status"] == "PENDING":
        hospital_admin.submit("Approve", flow)
    wait_status(hospital_admin, flow, "DONE")
    ok(researcher_kernel, f"f = %flowblock result {flow}")
    assert value(researcher_kernel, "type(f).__name__, f.provenance['inputs']") == (
        "ResultFigure",
        [counts],
    )
    ok(
        researcher_kernel,
        "j = %flowblock compute linear-regression -d vitals -p outcome=systolic "
        '-p predictors=\'["age", "smoker"]\' --no-wait',
    )
    model = token_of(researcher_kernel, "j")
    hospital_admin.submit("Approve", model)
    wait_status(hospital_admin, model, "DONE")
    ok(researcher_kernel, f"fit = %flowblock result {model}")
    assert value(researcher_kernel, "type(fit).__name__, isinstance(fit, dict), fit['n']") == (
        "ResultMetrics",
        True,
        210,
    )
    slope = float(ok(researcher_kernel, "fit['coefficients']['age']['estimate']"))
    assert 0.2 < slope < 0.7  # the demo's blood pressure rises 0.45 a year


# -- following tokens ------------------------------------------------------------------------


def test_status_tokens_audit_verify_and_budget(researcher_kernel):
    ok(researcher_kernel, "r = %flowblock compute count --dataset vitals")
    token_id = token_of(researcher_kernel, "r")
    assert f"token {token_id[:12]}…: DONE, cohort 210" in ok(researcher_kernel, "%flowblock status")
    assert "DONE" in ok(researcher_kernel, f"%flowblock status {token_id[:8]}")
    ok(researcher_kernel, "t = %flowblock tokens")
    assert value(researcher_kernel, "t.iloc[0]['token'], t.iloc[0]['method'], len(t) >= 1") == (
        token_id[:12],
        "count",
        True,
    )
    ok(researcher_kernel, f"a = %flowblock audit {token_id[:8]}")
    trail = value(researcher_kernel, "a[['status', 'by']].to_dict(orient='records')")
    assert [step["status"] for step in trail] == ["APPROVED", "RUNNING", "DONE"]
    assert trail[0]["by"] == "alice@University (approved by rules)"
    assert trail[-1]["by"] == "executor@Hospital"
    assert value(researcher_kernel, "str(a['cohort'].dtype), int(a['cohort'].iloc[-1])") == (
        "Int64",
        210,
    )
    verified = ok(researcher_kernel, f"%flowblock verify {token_id[:8]}")
    assert f"token {token_id[:12]}… verified" in verified
    checks = [
        "signatures: 2 valid peer signature(s) of HospitalMSP, UniversityMSP",
        *("result hash", "result binding", "policy hash", "code hash", "audit trail"),
    ]
    for check in checks:
        assert f"✓ {check}" in verified
    assert "✗" not in verified
    ok(researcher_kernel, "b = %flowblock budget")
    assert value(researcher_kernel, "float(b.loc['vitals', 'granted']), list(b.columns)") == (
        5.0,  # the demo's grant to each researcher
        ["granted", "spent", "left"],
    )


def test_dp_epsilon_goes_to_the_admin_and_a_denial_says_who_and_why(
    researcher_kernel, hospital_admin
):
    ok(
        researcher_kernel,
        "j = %flowblock compute mean -d vitals -p column=bmi --dp-epsilon 1.5 --no-wait",
    )
    token_id = token_of(researcher_kernel, "j")
    token = json.loads(hospital_admin.evaluate("GetToken", token_id))
    assert (token["status"], token["epsilon"]) == ("PENDING", 1.5)  # rules approve ε ≤ 1
    hospital_admin.submit("Deny", token_id, "no privacy budget for this study")
    assert usage_error(researcher_kernel, f"%flowblock result {token_id[:10]}") == (
        "mean on vitals was denied by admin@Hospital: no privacy budget for this study"
    )


def test_an_interrupt_stops_the_wait_and_not_the_token(researcher_kernel, hospital_admin):
    done = researcher_kernel.run(
        "%flowblock compute long-running --dataset vitals -p seconds=1",
        interrupt_after="waiting for approval by an admin of Hospital",
    )
    assert done.status == "error"
    message = done.stderr.strip()
    assert message.startswith("UsageError: stopped waiting for token ")
    assert "which goes on (PENDING)" in message and "Traceback" not in json.dumps(done.outputs)
    short = message.split("token ", 1)[1][:12]
    assert "PENDING" in ok(researcher_kernel, f"%flowblock status {short}")
    ok(researcher_kernel, f"s = %flowblock status {short}")
    token_id = token_of(researcher_kernel, "s")
    hospital_admin.submit("Approve", token_id)
    wait_status(hospital_admin, token_id, "DONE")
    ok(researcher_kernel, f"r = %flowblock result {short}")
    assert ok(researcher_kernel, "int(r['count'][0])") == "210"
    # Interrupts leave the kernel's connection to the ledger whole: waits go on working.
    for _ in range(3):
        stopped = researcher_kernel.run(
            "%flowblock compute max-heart-rate --dataset vitals", interrupt_after="waiting for"
        )
        assert "stopped waiting for token" in stopped.stderr
    ok(researcher_kernel, "after = %flowblock compute count --dataset vitals", timeout=60)
    assert ok(researcher_kernel, "after.cohort_size") == "210"


# -- errors: one line, naming what was wrong ----------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("%flowblock comptue mean",
         "%flowblock: there is no command 'comptue'; did you mean 'compute'?"),
        ("%flowblock", "%flowblock needs a command: %flowblock whoami | methods"),
        ("%flowblock compute meen -d vitals",
         "there is no method 'meen' in the catalogue; did you mean 'mean'?"),
        ("%flowblock compute mean -d vitalz -p column=age",
         "there is no dataset 'vitalz'; did you mean 'vitals'?"),
        ("%flowblock compute mean -p column=age", "%flowblock compute: --dataset is required."),
        ("%flowblock compute mean -d vitals -p column",
         "%flowblock compute: --param must be KEY=VALUE, got 'column'."),
        ("%flowblock compute mean -d vitals -p column=age --dp-epsilon lots",
         "%flowblock compute: --dp-epsilon must be a number at least 0, got 'lots'."),
        ("%flowblock compute mean -d vitals -p column=age -p colour=red",
         "the parameters must be made of …column, epsilon, group_by, where, got 'colour'"),
        ("%flowblock compute histogram -d vitals -p column=age -p bins=500",
         "--param bins must be at most 100, got 500."),
        ("%flowblock compute mean -d vitals -p column=age -p where='[[\"age\", \"<\", 0]]'",
         "the data side's disclosure control withheld the result (rule min_cohort): "
         "the cohort is smaller than the minimum of 10."),
        ("%flowblock compute mean -d vitals -p column=age --frobnicate",
         "%flowblock compute: unrecognized arguments: --frobnicate."),
        ("%%flowblock compute mean -d vitals\n- column\n- age",
         "%%flowblock compute: the cell must hold a mapping of parameter names to values, "
         "got list."),
        ("%%flowblock compute mean -d vitals\ncolumn: [age",
         "%%flowblock compute: the cell must hold parameters as YAML or JSON (line 2)."),
        ("%%flowblock tokens\nx: 1", "%%flowblock takes a cell only for compute, not tokens."),
        ("%flowblock result ffffffff",
         "you have no token starting with 'ffffffff'; see %flowblock tokens."),
        ("%flowblock verify ab", "a token must be given by at least 4 characters, got 'ab'."),
        ("%flowblock methods meen",
         "there is no method 'meen' in the catalogue; did you mean 'mean'?"),
        ("%flowblock budget --dataset vitalz",
         "there is no dataset 'vitalz'; did you mean 'vitals'?"),
    ],
)  # fmt: skip
def test_every_mistake_is_one_line_naming_what_was_wrong(researcher_kernel, line, expected):
    # "…" stands for anything (what other methods' schemas add); the line may go on.
    pattern = ".*".join(re.escape(part) for part in expected.split("…"))
    assert re.match(pattern, usage_error(researcher_kernel, line))


def test_a_result_not_ready_says_where_its_token_is(researcher_kernel):
    ok(researcher_kernel, "j = %flowblock compute max-heart-rate -d vitals --no-wait")
    token_id = token_of(researcher_kernel, "j")
    assert usage_error(researcher_kernel, f"%flowblock result {token_id}") == (
        f"%flowblock result: token {token_id[:12]} is PENDING (waiting for approval by "
        f"an admin of Hospital); wait with %flowblock status {token_id[:12]}."
    )


def test_without_the_environment_the_magics_say_what_is_missing(demo_stack, tmp_path):
    env = demo_stack.kernel_env("bob", tmp_path)
    del env["FLOWBLOCK_GATEWAY"], env["FLOWBLOCK_WALLET"]
    kernel = IPythonKernel(env, tmp_path)
    try:
        assert ok(kernel, "%load_ext flowblock") == ""
        assert usage_error(kernel, "%flowblock whoami") == (
            "FLOWBLOCK_GATEWAY and FLOWBLOCK_WALLET must be set to connect to FlowBlock "
            "(the address of a Fabric Gateway and the path of your wallet)."
        )
    finally:
        kernel.close()
