"""Analysis of finished runs: the statistics of a fair optimizer comparison (see ``stats``)."""
