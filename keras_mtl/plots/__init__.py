"""Figures: learning curves per head, predictions with both heads' answers,
the seed diagram with measured gradient norms, and diagnostics over training.
Needs matplotlib: `pip install "keras-mtl[plots]"`.

Every function writes a PNG and an SVG (text kept as text) and returns their
paths. They draw with `matplotlib.figure.Figure`, without pyplot, so they never
open windows or change the caller's backend; in a notebook, show the PNG with
`IPython.display.Image(filename=png)`. (The tuning trade-off plot is
`keras_mtl.tuning.plot.plot_tradeoff`.)

Example:

```python
model, history, run_dir = keras_mtl.train(config)
keras_mtl.plots.plot_history(history, config.tasks, run_dir / "curves")
report = keras_mtl.diagnose_gradients(model, batch)
keras_mtl.plots.plot_gradient_flow(report, run_dir / "gradient_flow")
```
"""

from keras_mtl.plots.gradients import plot_gradient_flow, plot_gradient_history
from keras_mtl.plots.history import plot_history
from keras_mtl.plots.predictions import plot_predictions

__all__ = [
    "plot_gradient_flow",
    "plot_gradient_history",
    "plot_history",
    "plot_predictions",
]
