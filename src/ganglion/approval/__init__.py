"""Approvals: what the assistant may not do without the owner's yes.

- `policy`: the owner's rules and defaults, and the decision for one call (pure);
- `added`: the rules the owner added by answering "always" (`approvals.yaml`).

The questions and answers are kept by the store (`ganglion.store.approvals`); a thread
actor asks and waits (`ganglion.threads.approvals`).
"""

from ganglion.approval.policy import Verdict, call_text, decide, kind_of, rule_for

__all__ = ["Verdict", "call_text", "decide", "kind_of", "rule_for"]
