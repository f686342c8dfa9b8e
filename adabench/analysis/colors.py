"""One color per optimizer over a whole study: every figure and the results page draw an optimizer in the same color,
whichever subset of the study's optimizers it shows (the copy's problems, the tuned problems, the optimizers that
report step sizes), and in every panel of a figure, so that its one legend holds for all (a palette drawn per panel
would give one color to different optimizers in different panels)."""
from __future__ import annotations

import plotly.colors
import seaborn as sns


def optimizer_colors(names, study=()) -> dict[str, str]:
    """A hex color for each of ``names`` (and of ``study``): the study's optimizers (``study``: every optimizer it
    runs) take the palette's colors in sorted order, whatever a figure shows; names outside it (a label that adds a
    setting, or the whole list where no study is given) take the next ones, sorted. Up to 10 colors: seaborn's
    default ("deep"); up to 24: Plotly's 24 distinct ones (cycling 10 would give two optimizers one color); beyond,
    husl's evenly spaced hues."""
    ordered = sorted(set(map(str, study)))
    every = ordered + sorted(set(map(str, names)) - set(ordered))
    if len(every) <= 10:
        palette = sns.color_palette("deep").as_hex()
    elif len(every) <= len(plotly.colors.qualitative.Dark24):
        palette = plotly.colors.qualitative.Dark24
    else:
        palette = sns.color_palette("husl", len(every)).as_hex()
    return dict(zip(every, palette))
