"""A hospital to attack: the real chaincode in-process, the real executor, a real bucket.

The privacy suite (``tests/privacy``) plays a determined researcher against the data
side's disclosure control. :class:`Hospital` gives it what that researcher faces: the
FlowBlock chaincode on a :class:`~flowblock.testing.chaincode.LocalLedger` (milliseconds a
transaction, no devnet to start), every installed algorithm published with auto-approval
for both organisations' researchers, the Hospital's real
:class:`~flowblock.executor.worker.Executor` and :class:`DisclosurePolicy` over the bucket
it is given (a real S3 server in the suite), and a :class:`flowblock.Client` per
researcher. Each attack imports a table of its own (:func:`patients_table`: every value
known to the test), so what was released can be compared with the truth.

:meth:`Hospital.ask` is the attacker's one move: request, let the executor run the token
at once, and open what was sealed to the requester, as ``Job.result`` does (an in-process
ledger has no second peer to endorse the token, so the endorsement check is left out:
it guards integrity, not disclosure). A refusal is an :class:`Outcome` too, with the
failure the ledger holds, since refusals are answers an attacker reads.

:class:`RiskLabeller` stands in for a data-side labelling step (as ``pneumonia-classify``
labels X-rays, without TensorFlow): its per-record labels are kept data-side for a flow
and counted by the real ``xray-case-count``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flowblock.chaincode.contracts import CHAINCODE_NAME
from flowblock.executor.algorithms.base import Algorithm
from flowblock.identity import Identity

#: Every installed method is approved without an admin, for these organisations' researchers.
RESEARCH_ORGANISATIONS = ("University", "Hospital")
#: The most ε one request may spend without an admin (the policy's own limit is 2).
AUTO_EPSILON = 5.0
#: An :class:`Outcome`'s status when the ledger refused the request itself.
REFUSED_AT_REQUEST = "REFUSED_AT_REQUEST"


def patients_table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """One row per patient, every value known to the attacker's judge.

    ``enrolled`` numbers the patients 0… (an admission order the attacker may know of a
    neighbour), so a filter on it moves exactly one patient; ``diagnosis`` has 3 ``rare``
    and 12 ``uncommon`` patients; ``postcode`` has too many values to be a category;
    ``hiv`` is the secret attribute, ``systolic`` the secret value.
    """
    rng = np.random.default_rng(seed)
    diagnosis = np.array(["common"] * n, dtype=object)
    diagnosis[:3], diagnosis[3:15] = "rare", "uncommon"
    return pd.DataFrame(
        {
            "patient_id": [f"pt{i:03d}" for i in range(n)],
            "enrolled": np.arange(n),
            "age": rng.integers(20, 90, n),
            "sex": (["F", "M"] * n)[:n],
            "postcode": [f"PC{code:02d}" for code in rng.integers(0, 80, n)],
            "diagnosis": diagnosis,
            "smoker": rng.random(n) < 0.3,
            "hiv": rng.random(n) < 0.2,
            "systolic": rng.normal(130, 15, n).round(1),
            "heart_rate": rng.normal(72, 9, n).round(1),
            "cost": rng.uniform(100, 200, n).round(2),
        }
    )


def consenting_ids(frame: pd.DataFrame) -> list[str]:
    """Who consents in the suite's tables: everyone but every tenth patient (enrolled 9, 19…)."""
    return [p for p, e in zip(frame["patient_id"], frame["enrolled"], strict=True) if e % 10 != 9]


def cohort_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The consenting patients' rows: what every computation on the table sees."""
    return frame[frame["patient_id"].isin(consenting_ids(frame))]


def patient(frame: pd.DataFrame, enrolled: int) -> pd.Series:
    """The one row of the patient admitted ``enrolled``-th: the attacker's target."""
    (row,) = frame[frame["enrolled"] == enrolled].itertuples(index=False)
    return pd.Series(row._asdict())


def tracker(a: Sequence[int], b: Sequence[int], target: int) -> list[list[int]]:
    """The cohorts of the classic tracker (admission numbers): A and the target, B and the
    target, and all three. The first two totals less the third are the target's."""
    return [[*a, target], [*b, target], [*a, *b, target]]


@dataclass
class Outcome:
    """What one request gave its requester: a released value, or a refusal to read."""

    token_id: str
    status: str
    value: Any = None
    cohort_size: int | None = None
    failure: dict | None = None

    @property
    def released(self) -> bool:
        return self.status == "DONE"

    @property
    def rule(self) -> str | None:
        return (self.failure or {}).get("rule") or None

    @property
    def message(self) -> str:
        return (self.failure or {}).get("message", "")

    def group(self, **key: Any) -> dict:
        """The released group whose fields equal ``key`` (the only one, without a key)."""
        groups = [g for g in self.value["groups"] if all(g.get(k) == v for k, v in key.items())]
        if len(groups) != 1:
            raise KeyError(f"no single group {key!r} in {self.value!r}")
        return groups[0]

    def statistic(self, name: str, **key: Any) -> float | None:
        """A released statistic of one group; None if refused or withheld."""
        return self.group(**key).get(name) if self.released else None


class RiskLabeller(Algorithm):
    """Labels each record ``pneumonia`` where a boolean column is true, else ``normal``:
    a data-side labelling step like ``pneumonia-classify``, kept data-side for a flow."""

    name = "test-risk-labeller"
    description = "Labels each record by a yes/no column (the labels stay data-side)."
    parameters = {
        "type": "object",
        "properties": {"column": {"type": "string", "minLength": 1},
                       "where": {"type": "array"}},
        "required": ["column"],
        "additionalProperties": False,
    }  # fmt: skip
    output_kind = "labels"
    disclosure_class = "labels"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        flags = frame[params["column"]].astype(bool)
        return {
            "predictions": [
                {"patient_id": int(p), "predicted": "pneumonia" if flag else "normal"}
                for p, flag in zip(frame["patient_id"], flags, strict=True)
            ]
        }


@dataclass
class Hospital:
    """The Hospital's ledger, executor and bucket, and researchers of both organisations.

    ``world`` is a :class:`~flowblock.testing.flowblock_ledger.World` over a
    :class:`~flowblock.testing.flowblock_ledger.LocalDriver`: its ``grant`` is how a patient
    consents, whatever form the consent contract takes.
    """

    world: Any
    store: Any
    policy: Any = None
    patients: dict[str, Identity] = field(default_factory=dict)
    _datasets: int = 0

    def __post_init__(self) -> None:
        from flowblock.executor.algorithms import load_algorithms, publish_algorithms

        people = self.world.people
        admin = self.world.hospital_admin
        publish_algorithms(self.contract(admin, "catalogue"))
        self.contract(admin, "catalogue").submit(
            "Publish", json.dumps(RiskLabeller.catalogue_entry())
        )
        self.algorithms = {**load_algorithms(), (RiskLabeller.name, RiskLabeller.version):
                           RiskLabeller}  # fmt: skip
        self.set_rules()
        hospital = people.authority("Hospital")
        #: Researchers by name: alice and bob of the University, carol of the Hospital.
        self.researchers = {
            "alice": self.client(people.identity("alice")),
            "bob": self.client(people.identity("bob")),
            "carol": self.client(hospital.issue("carol", "researcher")),
        }
        self.executor = self.new_executor(self.policy)
        self.executor.publish_certificate()  # as an executor does when it starts

    # -- the ledger, as each person reaches it ----------------------------------------

    @property
    def ledger(self):
        return self.world.driver.ledger

    def contract(self, who: Identity, name: str = ""):
        from flowblock.testing.chaincode import LocalGateway

        network = LocalGateway(self.ledger, who).get_network("flowblock")
        return network.get_contract(CHAINCODE_NAME, name)

    def client(self, who: Identity):
        from flowblock.client import Client
        from flowblock.testing.chaincode import LocalGateway

        return Client(LocalGateway(self.ledger, who))

    def new_executor(self, policy: Any = None):
        """Another executor of the Hospital over the same bucket (a policy of its own)."""
        from flowblock.executor.worker import Executor

        executor = self.world.executor
        return Executor(self.contract(executor), self.store, "Hospital", policy=policy,
                        algorithms=self.algorithms)  # fmt: skip

    def set_rules(self, dp_only: dict | None = None) -> None:
        """Auto-approve every method for both organisations' researchers (``dp_only`` as
        the rules take it: datasets and classes answered only with DP)."""
        methods = sorted({name for name, _ in self.algorithms})
        rules = {
            "auto_approve": {"methods": methods, "purposes": ["research"],
                             "organisations": list(RESEARCH_ORGANISATIONS),
                             "max_epsilon": AUTO_EPSILON},
            "dp_only": dp_only or {},
        }  # fmt: skip
        self.contract(self.world.hospital_admin).submit("SetRules", json.dumps(rules))

    def grant_budget(self, dataset: str, researcher: str, epsilon: float) -> None:
        key = self.researchers[researcher].identity.key
        self.contract(self.world.hospital_admin, "budget").submit("Grant", dataset, key, epsilon)

    # -- data --------------------------------------------------------------------------

    def dataset(
        self,
        frame: pd.DataFrame,
        consenting: Iterable[str] | None = None,
        organisations: Sequence[str] = ("University",),
    ) -> str:
        """Import ``frame`` as a new dataset of the Hospital; ``consenting`` patients (all
        but every tenth, if not given) consent to research by ``organisations``."""
        from flowblock.executor.ingest import import_table

        self._datasets += 1
        name = f"attack{self._datasets}"
        import_table(frame, name, self.contract(self.world.steward, "records"), self.store)
        authority = self.world.people.authority("Hospital")
        who = consenting_ids(frame) if consenting is None else list(consenting)
        new = {p: authority.issue(p, "patient") for p in who if p not in self.patients}
        if new:  # the Hospital records whom each pseudonymous certificate stands for
            self.world.enrol(*new.values())
            self.patients.update(new)
        for patient in who:
            for organisation in organisations:
                self.grant(name, self.patients[patient], f"org:{organisation}")
        return name

    def grant(self, dataset: str, patient: Identity, to: str) -> None:
        """The patient consents to computations for research by ``to``, through the
        World's own grant (one place knows the consent contract's form)."""
        self.world.grant(patient, to, "C", "research", dataset=dataset)

    # -- the attacker's move -------------------------------------------------------------

    def ask(
        self,
        dataset: str,
        method: str,
        params: dict | None = None,
        *,
        who: str = "alice",
        epsilon: float | None = None,
        inputs: Sequence[str] = (),
        executor: Any = None,
    ) -> Outcome:
        """``who`` asks; the executor runs the token if it was approved; what came back."""
        from flowblock.errors import FlowBlockError
        from flowblock.sealing import open_sealed

        client = self.researchers[who]
        try:
            job = client.compute(method, dataset, params or {}, "research", inputs=list(inputs),
                                 epsilon=epsilon)  # fmt: skip
        except FlowBlockError as refused:  # by the ledger, at request: an answer too
            failure = {"kind": type(refused).__name__, "rule": "", "message": str(refused)}
            return Outcome("", REFUSED_AT_REQUEST, failure=failure)
        if job.status == "APPROVED":
            (executor or self.executor).process(job.token_id)
        token = client.job(job.token_id).token
        outcome = Outcome(job.token_id, token["status"], failure=token.get("failure"))
        if token["status"] == "DONE":
            sealed = token["result"]["encrypted"]
            opened = json.loads(open_sealed(sealed, client.identity, job.token_id))
            outcome.value = opened["value"]
            outcome.cohort_size = token["result"].get("cohort_size")
        return outcome


# -- judging what was released -------------------------------------------------------------


def determined(inferred: float | None, truth: float, tolerance: float = 1e-6) -> bool:
    """Whether the attacker's inference pins the truth down (None: they could infer nothing)."""
    return inferred is not None and math.isclose(inferred, truth, rel_tol=0, abs_tol=tolerance)


def feasible_counts(released: Sequence[int | None], base: int = 5) -> tuple[int, int]:
    """The least and greatest exact total of counts released rounded to ``base``."""
    half = base // 2
    shown = [c for c in released if c is not None]
    return max(0, sum(shown) - half * len(shown)), sum(shown) + half * len(shown)
