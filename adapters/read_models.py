"""The public import path of the read models a host keeps in process: `ReadModels` (adapters/views/keeper.py).

Kept where hosts have imported it from since 0.1; the implementation lives in the views room.
"""

from itertrack.adapters.views.keeper import ReadModels

__all__ = ["ReadModels"]
