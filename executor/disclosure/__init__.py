"""Disclosure control: what a result may reveal, decided data-side before it leaves.

:class:`DisclosurePolicy` is the organisation's policy (traitlets, hashed into every
result's provenance); :mod:`.classes` names the kinds of output an algorithm declares,
and :mod:`.release` applies each kind's rules; :mod:`.sdc` asks ACRO's checks,
:mod:`.tables` suppresses and rounds count tables, :mod:`.differencing` keeps the cohorts
already released. The differentially private algorithms themselves live with the
statistics, on OpenDP.
"""

from flowblock.executor.disclosure.policy import DisclosurePolicy, Protected

__all__ = ["DisclosurePolicy", "Protected"]
