"""The loops ``bench/learner.py`` compares livelearn with, each run as a process of its own (start-up counted)."""
