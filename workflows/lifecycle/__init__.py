"""The achievement lifecycle entity workflow: workflow.py (the decorated class: run loop and
handlers), stages.py (what each stage does), engine.py (waiting, interrupts, recording)."""

from workflows.lifecycle.workflow import AchievementLifecycle

__all__ = ["AchievementLifecycle"]
