"""Names that say where a weight sits in a model: `block/inner` for a layer, `block/inner/kernel`
for one of its weights.

`variable.path` records the name scopes a weight was created under, which depend on how the
model was built rather than on what it is: a Sequential puts its own name in front, a
functional block built on its own does not, and two blocks built apart can give their
weights the same path. So the path here is walked through the model instead: the names of
the layers from the model down to the layer that owns the weight, through every nested
model (Sequential, functional or subclassed). The model's own name is left out, so a flat
model's layers keep their plain names (`dense_1`). Inside a layer that is not a model (a
custom block holding sub-layers, a `Bidirectional` wrapper), the weights are grouped by the
sub-layer their path names, so a block's layers show one by one: `res_block/dense_1`.

A layer used at several call sites is one entry (its gradient sums over them); a layer that
is not trainable has no trainable weights and no entry.
"""

from __future__ import annotations

import keras


def weighted_layers(model: keras.Model) -> dict[str, list]:
    """`{layer path: its trainable variables}` for each layer that owns some, input side first.

    Example:
        >>> block = keras.Sequential([keras.layers.Dense(4, name="inner")], name="block")
        >>> inputs = keras.Input((3,))
        >>> model = keras.Model(inputs, keras.layers.Dense(1, name="out")(block(inputs)))
        >>> list(weighted_layers(model))
        ['block/inner', 'out']
    """
    return {path: [variable for _, variable in named] for path, named in _grouped(model).items()}


def variable_paths(model: keras.Model) -> list[str]:
    """The path of each of `model.trainable_variables`, in that order: `block/inner/kernel`."""
    paths = {id(variable): name for named in _grouped(model).values() for name, variable in named}
    return [paths[id(variable)] for variable in model.trainable_variables]


def _grouped(model) -> dict[str, list[tuple[str, object]]]:
    """`{layer path: [(variable path, variable), ...]}`, each trainable variable once."""
    groups: dict[str, list[tuple[str, object]]] = {}
    claimed: set[int] = set()

    for path, layer in _leaf_layers(model):
        own = [v for v in layer.trainable_weights if id(v) not in claimed]
        subpaths = [_relative_path(v.path, layer.name) for v in own]
        split = len({sub.rpartition("/")[0] for sub in subpaths}) > 1
        owners = {}
        for variable, sub in zip(own, subpaths, strict=True):
            directory, _, name = sub.rpartition("/")
            group = f"{path}/{directory}" if split and directory else path
            # Every variable of one sub-layer goes to the group its first variable opened.
            group = owners.setdefault(group, _unique(groups, group))
            groups.setdefault(group, []).append((f"{group}/{name if split else sub}", variable))
            claimed.add(id(variable))
    # Weights a model holds itself (`add_weight` in a subclassed model), not through a layer.
    for variable in model.trainable_variables:
        if id(variable) not in claimed:
            directory, _, name = variable.path.rpartition("/")
            group = directory or model.name
            groups.setdefault(group, []).append((f"{group}/{name}", variable))
    return groups


def _leaf_layers(model) -> list[tuple[str, object]]:
    """`(path, layer)` for each layer that is not a model, walking nested models; each once."""
    leaves, seen = [], set()

    def walk(container, prefix):
        for layer in container.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if isinstance(layer, keras.Model):
                walk(layer, f"{prefix}{layer.name}/")
            else:
                leaves.append((f"{prefix}{layer.name}", layer))

    walk(model, "")
    return leaves


def _relative_path(variable_path: str, layer_name: str) -> str:
    """The variable's path below its layer: `lstm_cell/kernel` for `seq/lstm/lstm_cell/kernel`."""
    parts = variable_path.split("/")
    if layer_name in parts[:-1]:
        return "/".join(parts[parts.index(layer_name) + 1 :])
    return parts[-1]


def _unique(groups: dict, key: str) -> str:
    """`key`, or `key#2`, `key#3`, ... if a group of that name exists (layers named alike)."""
    if key not in groups:
        return key
    count = 2
    while f"{key}#{count}" in groups:
        count += 1
    return f"{key}#{count}"
