"""The learner process: consume events, score then learn each one, snapshot versions, follow rollbacks."""

from streaming.learner.runner import Learner, spec_from_settings

__all__ = ["Learner", "spec_from_settings"]
