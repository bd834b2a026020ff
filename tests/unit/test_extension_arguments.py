"""The %flowblock command line and result objects, without a kernel or a ledger."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from IPython.core.error import UsageError

from flowblock.client import Result
from flowblock.extension.arguments import HelpShown, cell_params, parse, parse_value
from flowblock.extension.results import ResultFrame, ResultMetrics, rich
from flowblock.extension.status import describe


def test_compute_takes_its_arguments_as_documented():
    command, args = parse(
        "compute mean --dataset vitals --param column=systolic -p bins=10 "
        "-p group_by='[\"smoker\"]' -p where='[[sex, \"==\", F]]' --purpose 'bp study' "
        "--dp-epsilon 0.5 --input abcd1234 --input ef567890 --no-wait"
    )
    assert command == "compute"
    assert (args.method, args.dataset, args.purpose) == ("mean", "vitals", "bp study")
    assert dict(args.param) == {
        "column": "systolic",
        "bins": 10,
        "group_by": ["smoker"],
        "where": [["sex", "==", "F"]],
    }
    assert (args.dp_epsilon, args.input, args.no_wait) == (0.5, ["abcd1234", "ef567890"], True)
    _, defaults = parse("compute count -d vitals")
    assert (defaults.purpose, defaults.dp_epsilon, defaults.no_wait, defaults.param) == (
        "research",
        None,
        False,
        [],
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [("10", 10), ("2.5", 2.5), ("true", True), ("systolic", "systolic"), ("F", "F"),
     ("[smoker, sex]", ["smoker", "sex"]), ('["age", ">=", 40]', ["age", ">=", 40]),
     ("[unclosed", "[unclosed"), ("", "")],
)  # fmt: skip
def test_parameter_values_are_json_then_yaml_lists_then_text(text, value):
    assert parse_value(text) == value


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "%flowblock needs a command: %flowblock whoami | methods | compute"),
        ("comptue mean", "%flowblock: there is no command 'comptue'; did you mean 'compute'?"),
        ("frobnicate", "%flowblock: there is no command 'frobnicate'; expected one of whoami"),
        ("compute", "%flowblock compute: method, --dataset are required."),
        ("compute mean", "%flowblock compute: --dataset is required."),
        ("compute mean -d vitals -p =3",
         "%flowblock compute: --param must be KEY=VALUE, got '=3'."),
        ("compute mean -d vitals --dp-epsilon -1",
         "%flowblock compute: --dp-epsilon must be a number at least 0, got '-1'."),
        ("compute mean -d vitals --timeout 0",
         "%flowblock compute: --timeout must be a number of seconds above 0 and at most a week, "
         "got '0'."),
        ("compute mean -d vitals --timeout inf",
         "%flowblock compute: --timeout must be a number of seconds above 0 and at most a week"),
        ("compute mean -d vitals -p since=[2024-01-01]",
         "%flowblock compute: --param since must be text, a number, true/false, a list or a "
         "mapping; quote dates and times"),
        ("compute mean -d vitals --datset x",
         "%flowblock compute: unrecognized arguments: --datset x."),
        ("result", "%flowblock result: token is required."),
        ("methods a b", "%flowblock methods: unrecognized arguments: b."),
        ("compute mean -d 'vitals", "%flowblock: the line cannot be split into arguments"),
        ("compute mean -d vitals -p where=" + "[" * 5000 + "]" * 5000,
         "%flowblock compute: --param must be nested at most 64 levels deep"),
        ("compute mean -d vitals -p where=" + "[" * 65 + "]" * 65,
         "%flowblock compute: --param must be nested at most 64 levels deep"),
        ("compute mean -d vitals -p 'where=" + "[a, " * 3000 + "]" * 3000 + "'",
         "%flowblock compute: --param must be nested at most 64 levels deep"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line_usage_errors(line, message):
    with pytest.raises(UsageError) as error:
        parse(line)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_help_prints_usage_and_stops(capsys):
    with pytest.raises(HelpShown):
        parse("help")
    assert "compute  Ask for a computation" in capsys.readouterr().out
    with pytest.raises(HelpShown):
        parse("compute --help")
    assert "--dp-epsilon E" in capsys.readouterr().out


def test_a_cell_holds_yaml_or_json_parameters():
    assert cell_params("column: age\nbins: 5\nwhere:\n  - [sex, '==', F]\n") == {
        "column": "age",
        "bins": 5,
        "where": [["sex", "==", "F"]],
    }
    assert cell_params('{"column": "age", "group_by": ["sex"]}') == {
        "column": "age",
        "group_by": ["sex"],
    }
    assert cell_params("  \n") == {}
    with pytest.raises(UsageError, match="a mapping of parameter names to values, got str"):
        cell_params("just words")
    with pytest.raises(UsageError, match=r"as YAML or JSON \(line 1\)"):
        cell_params("column: [age")
    with pytest.raises(UsageError, match=r"since must be text, .* quote dates and times"):
        cell_params("column: age\nsince: 2024-01-01\n")
    assert cell_params("since: '2024-01-01'") == {"since": "2024-01-01"}


def _result(value, **token) -> Result:
    provenance = {"params": token.pop("params", {}), "result": {"cohort_size": 42}, **token}
    return Result("t" * 64, value, provenance)


def test_grouped_values_histograms_quantiles_and_crosstabs_become_traced_frames():
    groups = [{"sex": "F", "count": 20, "mean": 1.5}, {"sex": "M", "count": 22, "mean": 2.5}]
    mean = rich(_result({"column": "x", "groups": groups}))
    assert isinstance(mean, ResultFrame) and isinstance(mean, pd.DataFrame)
    assert mean.to_dict("records")[1] == {"sex": "M", "count": 22, "mean": 2.5}
    assert (mean.token_id, mean.cohort_size) == ("t" * 64, 42)
    histogram = rich(
        _result({"column": "age", "edges": [0, 10, 20], "groups": [{"counts": [15, 27]}]}),
        "table",
    )
    assert histogram.to_dict("records") == [
        {"bin_start": 0, "bin_end": 10, "count": 15},
        {"bin_start": 10, "bin_end": 20, "count": 27},
    ]
    quantiles = rich(_result({"groups": [{"count": 42, "quantiles": {"0.5": 3.0}}]}))
    assert list(quantiles.columns) == ["count", "quantiles 0.5"]
    crosstab = rich(
        _result({"rows": ["F", "M"], "columns": [False, True], "counts": [[10, 11], [12, 9]]},
                params={"rows": "sex", "columns": "smoker"}),
        "table",
    )  # fmt: skip
    assert (crosstab.index.name, crosstab.columns.name, int(crosstab.loc["M", True])) == (
        "sex",
        "smoker",
        9,
    )


def test_models_become_traced_dicts_and_charts_figures():
    fit = rich(_result({"n": 42, "coefficients": {"age": {"estimate": 0.4}}}), "metrics")
    assert isinstance(fit, ResultMetrics) and fit["n"] == 42 and fit.cohort_size == 42
    assert "<table>" in fit._repr_html_()
    from matplotlib.figure import Figure

    groups = [{"sex": "F", "count": 20}, {"sex": "M", "count": 22}]
    chart = rich(_result({"chart": "donut", "column": "sex", "groups": groups}))
    assert isinstance(chart, Figure) and type(chart).__name__ == "ResultFigure"
    assert chart._repr_png_().startswith(b"\x89PNG")
    bar = rich(_result({"chart": "bar", "column": "sex", "groups": [{"sex": "F", "count": 20}]}))
    assert [t.get_text() for t in bar.axes[0].get_xticklabels()] == ["F"]


def test_the_status_line_says_where_a_token_is():
    token = {"data_org": "Hospital", "progress": 40, "result": None, "reason": ""}
    assert describe({**token, "status": "PENDING"}) == "waiting for approval by Hospital"
    awaiting = {**token, "status": "PENDING", "awaiting": "approval by an admin of Hospital"}
    assert describe(awaiting) == "waiting for approval by an admin of Hospital"
    assert describe({**token, "status": "APPROVED"}) == "queued at Hospital's executor"
    assert describe({**token, "status": "RUNNING", "progress_message": "step 4"}) == (
        "running, 40% (step 4)"
    )
    assert describe({**token, "status": "DONE", "result": {"cohort_size": 12}}) == (
        "done, cohort of 12"
    )
    failure = {"kind": "disclosure_refused", "rule": "dominance", "status": 0,
               "message": "too big."}  # fmt: skip
    refused = {**token, "status": "FAILED", "reason": "too big.", "failure": failure}
    assert describe(refused) == "withheld by disclosure control (rule dominance)"
    failed = {**refused, "failure": {**failure, "kind": "computation_failed", "rule": ""}}
    assert describe(failed) == "failed: too big."
    assert describe({**token, "status": "DENIED", "reason": "no"}) == "denied: no"


def test_importing_flowblock_stays_light_and_load_ext_registers_the_magic():
    code = (
        "import sys, flowblock\n"
        "assert not {'IPython', 'grpc', 'pandas'} & set(sys.modules), sorted(sys.modules)\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "shell.run_line_magic('load_ext', 'flowblock')\n"
        "assert 'flowblock' in shell.magics_manager.magics['line']\n"
        "assert 'flowblock' in shell.magics_manager.magics['cell']\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


def _interrupt_once_the_kernel_thread_waits() -> None:
    """Ctrl-C, as the kernel sends it, while a call is under way: the magics run the call
    in a thread of their own, so the moment is when the kernel's thread waits for it."""
    import _thread
    import threading

    from flowblock.testing.waiting import wait_until, waiting_in

    kernel = threading.main_thread()
    wait_until(lambda: waiting_in(kernel, threading.Thread.join), timeout=10)
    _thread.interrupt_main()


def test_an_interrupt_while_asking_is_one_line_and_leaves_the_request_be():
    import threading

    from IPython.core.error import UsageError

    from flowblock.extension.magics import FlowBlockMagics

    class SlowClient:  # a request still on its way when Ctrl-C comes
        asked = threading.Event()
        ctrl_c = True

        def compute(self, *args, **options):
            self.asked.set()
            if self.ctrl_c:
                _interrupt_once_the_kernel_thread_waits()
            return "the job"

    client = SlowClient()
    magics = FlowBlockMagics(client=client)
    with pytest.raises(UsageError, match="interrupted while the request was on its way"):
        magics._ask("mean", "vitals", {})
    assert client.asked.is_set()
    client.ctrl_c = False  # and the next request goes through as usual
    assert magics._ask("mean", "vitals", {}) == "the job"


def test_an_interrupt_in_any_command_is_one_line_never_a_trace_from_grpc():
    from IPython.core.error import UsageError

    from flowblock.extension.magics import FlowBlockMagics

    class SlowLedger:
        def jobs(self, status=""):
            _interrupt_once_the_kernel_thread_waits()
            return []

        def methods(self):
            return []

    magics = FlowBlockMagics(client=SlowLedger())
    with pytest.raises(UsageError, match=r"^%flowblock tokens: interrupted\.$"):
        magics.flowblock("tokens")
    with pytest.raises(UsageError, match="the catalogue has no enabled methods yet"):
        magics.flowblock("methods")
