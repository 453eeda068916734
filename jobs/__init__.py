"""Entry points: config -> pipeline -> run -> summary. The ``fcs`` console script lives in ``jobs.cli``."""
