"""The core: what a run is (its identity, its optimizer and problem) and how it trains and is recorded.

No study, no workflow: a run alone or a population of runs, from a RunSpec to its records."""
