"""Gradient-boosted trees per task: what a tabular user would try first.

`gradient_boosting_baseline` fits one scikit-learn
`HistGradientBoostingClassifier` (or `...Regressor`) per task on a CSV
config's data, as keras-mtl reads it: the same input columns, the same
train / validation / test split (`data.seed`) and the same labelled rows
(`data.label_fraction` hides the same labels, so each task's trees see exactly
the rows that its head learns from). Numeric columns go in as they are
(missing values as NaN, which the trees route themselves); categorical
columns as codes of their training vocabulary, declared categorical. The
scores come from the heads' own metric code (`evaluate_predictions`), so
AUC, accuracy and MAE are computed alike.

The trees fit and predict on one OpenMP thread: beside TensorFlow's threads on
a busy 2-core machine, scikit-learn's default (one per core) made the adult
fits 15 times slower (38 s against 2.5 s for marital status).

Example:

```python
scores = gradient_boosting_baseline(config, seed=0)
scores["test"]["income"]["auc"]
```
"""

import numpy as np
import tensorflow as tf

from keras_mtl.data.features import CategoricalFeature, NumericFeature
from keras_mtl.data.labels import apply_labels, is_labelled
from keras_mtl.evaluation.report import evaluate_predictions


def _columns(features, inputs):
    """The input columns as one float matrix, and which are categorical."""
    columns, categorical = [], []
    for feature in features:
        values = np.asarray(inputs[feature.name]).reshape(-1)
        if isinstance(feature, CategoricalFeature):
            codes = {value: i for i, value in enumerate(feature.vocabulary)}
            text = [
                v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()
            ]
            # Unseen and missing values are NaN: the trees route them alike.
            columns.append(np.array([codes.get(v, np.nan) for v in text], float))
            categorical.append(True)
        elif isinstance(feature, NumericFeature):
            columns.append(values.astype(float))
            categorical.append(False)
    return np.stack(columns, axis=1), np.array(categorical)


def _split_arrays(dataset):
    inputs, labels = dataset.batch(1 << 30).get_single_element()[:2]
    return (
        {name: value.numpy() for name, value in inputs.items()},
        {name: value.numpy() for name, value in labels.items()},
    )


def _fit(task, x, y, categorical, seed):
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )

    present = is_labelled(y, task.kind)
    y = np.asarray(y).reshape(-1)[present]
    model_class = (
        HistGradientBoostingRegressor
        if task.kind == "regression"
        else HistGradientBoostingClassifier
    )
    from threadpoolctl import threadpool_limits

    model = model_class(categorical_features=categorical, random_state=seed)
    with threadpool_limits(1):
        return model.fit(x[present], y if task.kind == "regression" else y.astype(int))


def _predict(task, model, x):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _predict_one_thread(task, model, x)


def _predict_one_thread(task, model, x):
    if task.kind == "regression":
        return model.predict(x).reshape(-1, 1).astype("float32")
    probabilities = model.predict_proba(x)
    if task.kind == "binary":
        positive = list(model.classes_).index(1) if 1 in model.classes_ else None
        column = probabilities[:, positive] if positive is not None else 0 * x[:, 0]
        return column.reshape(-1, 1).astype("float32")
    # Classes absent from the training labels get probability 0.
    full = np.zeros((len(x), task.num_classes), "float32")
    full[:, model.classes_.astype(int)] = probabilities
    return full


def gradient_boosting_baseline(config, seed=0):
    """Fits one `HistGradientBoosting*` model per task and scores it.

    Args:
        config: A `keras_mtl.Config` with `data.source = "csv"`.
        seed: The trees' `random_state`.

    Returns:
        `{"validation": {task: {"loss": ..., <metric>: ...}} or None,
        "test": {...}, "labelled": {task: training rows}}`.

    Raises:
        ValueError: The config does not read a CSV file.
    """
    from keras_mtl.data.csv_source import load_csv
    from keras_mtl.data.features import normalized_targets

    if config.data.source != "csv":
        raise ValueError(
            "The gradient-boosted trees baseline reads tabular columns: it needs "
            f"data.source='csv'. Received: data.source={config.data.source!r}"
        )
    splits, features, class_names, sizes = load_csv(config)
    splits, sizes, labelled, scales = apply_labels(config, splits, sizes, class_names)
    columns = [
        f for f in features if isinstance(f, CategoricalFeature | NumericFeature)
    ]
    inputs, labels = _split_arrays(splits["train"])
    x_train, categorical = _columns(columns, inputs)
    models = {
        task.name: _fit(task, x_train, labels[task.name], categorical, seed)
        for task in config.tasks
    }

    def predict(batch_inputs):
        x, _ = _columns(columns, {k: v.numpy() for k, v in batch_inputs.items()})
        return {
            task.name: tf.constant(_predict(task, models[task.name], x))
            for task in config.tasks
        }

    target_scales = normalized_targets(config, tuple(features) + tuple(scales))
    loss_scales = {name: scale.std for name, scale in target_scales.items()}
    result = {"validation": None, "labelled": labelled["train"]}
    for split in ("validation", "test"):
        if sizes[split]:
            result[split] = evaluate_predictions(
                predict, splits[split].batch(4096), config.tasks, loss_scales
            )
    return result
