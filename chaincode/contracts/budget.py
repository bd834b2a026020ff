"""Differential-privacy budgets: ε per researcher and dataset, granted and spent.

The data organisation's admin grants ε; the executor charges it when it completes a
computation, in the same transaction as the result, and a charge that would take the
budget below zero is refused. A token whose ε is no longer covered is refused earlier
too, before any data is read: its approval (409) and its claim by the executor (402).
Amounts are kept in millionths of ε as integers, so sums are exact and every peer
computes the same bytes.
"""

from __future__ import annotations

import math

from flowblock.chaincode import Context, transaction
from flowblock.chaincode.contracts.base import (
    FlowBlockContract,
    Invalid,
    OutOfBudget,
    Refused,
    caller,
    emit,
    key,
    read,
    require,
    write,
)
from flowblock.chaincode.contracts.records import DATA_SIDE, get_dataset
from flowblock.vocabulary import Event

BUDGET = "budget"
MICRO = 1_000_000


def to_micro(epsilon: float, argument: str = "epsilon") -> int:
    if (
        not isinstance(epsilon, int | float)
        or isinstance(epsilon, bool)
        or not math.isfinite(epsilon)
        or epsilon < 0
    ):
        raise Invalid(f"{argument} must be a number at least 0")
    if epsilon > 1000:
        raise Invalid(f"{argument} must be at most 1000")
    micro = round(epsilon * MICRO)
    if epsilon and not micro:
        raise Invalid(f"{argument} must be 0 or at least {1 / MICRO:g}")
    return micro


def budget_of(ctx: Context, dataset: str, researcher: str) -> dict:
    found = read(ctx, key(BUDGET, dataset, researcher)) or {"granted": 0, "spent": 0}
    return {
        "dataset": dataset,
        "researcher": researcher,
        "granted": found["granted"] / MICRO,
        "spent": found["spent"] / MICRO,
        "left": (found["granted"] - found["spent"]) / MICRO,
        "_micro": found,
    }


def require_budget(ctx: Context, dataset: str, researcher: str, epsilon: float) -> dict:
    """The researcher's budget record; refused (402, ChaincodeStatus.BUDGET_EXHAUSTED in
    flowblock.vocabulary, so clients tell it apart) if less than ``epsilon`` is left."""
    amount = to_micro(epsilon)
    found = read(ctx, key(BUDGET, dataset, researcher)) or {"granted": 0, "spent": 0}
    left = found["granted"] - found["spent"]
    if amount > left:
        raise OutOfBudget(
            f"{researcher} has ε={left / MICRO:g} left on {dataset!r}, "
            f"less than the ε={amount / MICRO:g} asked"
        )
    return found


def charge(ctx: Context, dataset: str, researcher: str, epsilon: float) -> dict:
    """Spend ``epsilon`` of the researcher's budget; refused if not enough is left."""
    found = require_budget(ctx, dataset, researcher, epsilon)
    found["spent"] += to_micro(epsilon)
    write(ctx, key(BUDGET, dataset, researcher), found)
    return found


def has_budget(ctx: Context, dataset: str, researcher: str, epsilon: float) -> bool:
    micro = budget_of(ctx, dataset, researcher)["_micro"]
    return to_micro(epsilon) <= micro["granted"] - micro["spent"]


class BudgetContract(FlowBlockContract):
    name = "budget"

    @transaction
    def Grant(self, ctx: Context, dataset: str, researcher: str, epsilon: float) -> dict:  # noqa: N802
        """The data organisation's admin adds ε to a researcher's budget on a dataset."""
        require(ctx, "admin", organisation=get_dataset(ctx, dataset)["organisation"])
        if "@" not in researcher:
            raise Invalid("researcher must be 'name@Organisation'")
        amount = to_micro(epsilon)
        if amount == 0:
            raise Invalid("epsilon must be more than 0")
        found = read(ctx, key(BUDGET, dataset, researcher)) or {"granted": 0, "spent": 0}
        found["granted"] += amount
        write(ctx, key(BUDGET, dataset, researcher), found)
        emit(ctx, Event.BUDGET_GRANTED, {"dataset": dataset, "researcher": researcher})
        return _public(budget_of(ctx, dataset, researcher))

    @transaction(submit=False)
    def Get(self, ctx: Context, dataset: str, researcher: str) -> dict:  # noqa: N802
        """A budget: researchers see their own, the data organisation's side any."""
        who = caller(ctx)
        organisation = get_dataset(ctx, dataset)["organisation"]
        researcher = researcher or who.key
        if who.key != researcher and not (
            who.role in DATA_SIDE and who.organisation == organisation
        ):
            raise Refused(f"{who.key} may not see the budget of {researcher}")
        return _public(budget_of(ctx, dataset, researcher))


def _public(budget: dict) -> dict:
    return {k: v for k, v in budget.items() if not k.startswith("_")}
