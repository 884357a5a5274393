"""Usage: what the model calls cost, and the budgets that cap it.

- `budgets`: which daily limits a call counts against, and whether it fits (pure);
- `text`: what the owner reads (`/usage`, `/budget`, a refused call) (pure);
- `meter`: `Meter`, which checks each call before it is made and counts it after.

The value types (`Spend`, `Totals`, the sources) are on the ground floor
(`ganglion.spend`); the rows are kept by the store (`ganglion.store.usage`).
"""

from ganglion.usage.budgets import Overrun, Scope
from ganglion.usage.meter import BudgetExceeded, Charge, Meter, spend_of

__all__ = ["BudgetExceeded", "Charge", "Meter", "Overrun", "Scope", "spend_of"]
