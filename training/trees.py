"""A small converter of scikit-learn tree ensembles to the ai.onnx.ml opset-5 ``TreeEnsemble`` operator.

Why our own converter instead of skl2onnx:
- skl2onnx 1.20 with onnx 1.23 fails on HistGradientBoosting ("Expected an int, got a boolean").
- skl2onnx writes a RandomForest as ``TreeEnsembleClassifier`` (opset 1-3) with one weight entry per leaf
  *per class* (20 per leaf, zeros included) and every node field as an unpacked protobuf list with string
  modes: 300 full-depth trees became 280 MB. Opset-5 ``TreeEnsemble`` stores modes as a uint8 tensor and
  split values as one float tensor, and a leaf carries only its nonzero weights, so the same forest is
  an order of magnitude smaller and loads far faster.

Exactness: both sklearn models compare ``x <= threshold`` with a float64 threshold (sklearn forests cast
``x`` to float32 first; HGB upcasts to float64, exactly). For float32 ``x``, ``x <= t`` holds exactly when
``x <= floor32(t)``, the largest float32 not above ``t``, so thresholds are rounded *down* to float32 and
the ONNX trees route every float32 input exactly as sklearn does.

Opset-5 leaves carry a single target. A leaf with several nonzero targets (impure leaves, e.g. identical
embeddings of empty posts with different labels) keeps its first target in place, and each further target
gets a "chain" tree that re-tests the root-to-leaf path and pays the weight only at its end; all trees are
summed (aggregate SUM), so the result is identical to a multi-target leaf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: a fitted scikit-learn estimator (a forest, a one-vs-rest of boosted trees) or its ``tree_``: scikit-learn
#: ships no type information, so what is read from it is converted to int, float and numpy arrays here
Sklearn: TypeAlias = Any

ML_OPSET = 5
AI_ONNX_OPSET = 21
IR_VERSION = 10
BRANCH_LEQ = 0
AGG_SUM = 1


def floor_float32(t: np.ndarray) -> np.ndarray:
    """Largest float32 <= t, element-wise (so float32 ``x <= result`` iff ``x <= t``)."""
    t = np.asarray(t, dtype=np.float64)
    t32 = t.astype(np.float32)
    over = t32.astype(np.float64) > t
    t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
    return t32


@dataclass
class Tree:
    """A binary tree in sklearn's array form: node i splits on feature[i] <= threshold[i]."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray  # float64
    is_leaf: np.ndarray  # bool
    leaf_values: dict[int, list[tuple[int, float]]]  # leaf node -> nonzero (target, weight)


@dataclass
class _Builder:
    modes: list[int] = field(default_factory=list)
    features: list[int] = field(default_factory=list)
    splits: list[float] = field(default_factory=list)
    true_ids: list[int] = field(default_factory=list)
    true_leaf: list[int] = field(default_factory=list)
    false_ids: list[int] = field(default_factory=list)
    false_leaf: list[int] = field(default_factory=list)
    roots: list[int] = field(default_factory=list)
    leaf_targets: list[int] = field(default_factory=list)
    leaf_weights: list[float] = field(default_factory=list)

    def leaf(self, target: int, weight: float) -> int:
        self.leaf_targets.append(int(target))
        self.leaf_weights.append(float(weight))
        return len(self.leaf_targets) - 1

    def node(self, feature: int, split: float) -> int:
        self.modes.append(BRANCH_LEQ)
        self.features.append(int(feature))
        self.splits.append(split)
        for lst in (self.true_ids, self.true_leaf, self.false_ids, self.false_leaf):
            lst.append(0)
        return len(self.modes) - 1

    def link(self, node: int, branch: bool, child: int, child_is_leaf: bool) -> None:
        ids, leafs = (self.true_ids, self.true_leaf) if branch else (self.false_ids, self.false_leaf)
        ids[node] = child
        leafs[node] = int(child_is_leaf)


def _add_tree(b: _Builder, tree: Tree, scale: float) -> None:
    splits = floor_float32(tree.threshold)
    extra: list[tuple[list[tuple[int, bool]], int, float]] = []  # (path, target, weight) for chain trees

    def leaf_of(node: int) -> int:
        vals = tree.leaf_values.get(node) or [(0, 0.0)]
        return b.leaf(vals[0][0], vals[0][1] * scale)

    if tree.is_leaf[0]:  # a stump: a dummy split whose both branches reach the same leaf
        n = b.node(0, 0.0)
        b.roots.append(n)
        lf = leaf_of(0)
        b.link(n, True, lf, True)
        b.link(n, False, lf, True)
        return
    mapping: dict[int, int] = {}
    stack: list[tuple[int, list[tuple[int, bool]]]] = [(0, [])]
    b.roots.append(len(b.modes))
    while stack:  # pre-order, so the root gets the first id of this tree
        node, path = stack.pop()
        mapping[node] = b.node(int(tree.feature[node]), float(splits[node]))
        for child, branch in ((tree.right[node], False), (tree.left[node], True)):
            cpath = [*path, (node, branch)]
            if tree.is_leaf[child]:
                b.link(mapping[node], branch, leaf_of(child), True)
                for target, weight in (tree.leaf_values.get(int(child)) or [])[1:]:
                    extra.append((cpath, target, weight))
            else:
                stack.append((int(child), cpath))
    for node in list(mapping):
        for child, branch in ((tree.left[node], True), (tree.right[node], False)):
            if not tree.is_leaf[child]:
                b.link(mapping[node], branch, mapping[int(child)], False)
    for path, target, weight in extra:  # chain tree: pays `weight` only if every test on the path agrees
        zero = b.leaf(target, 0.0)
        prev: tuple[int, bool] | None = None
        for node, branch in path:
            n = b.node(int(tree.feature[node]), float(splits[node]))
            if prev is None:
                b.roots.append(n)
            else:
                b.link(prev[0], prev[1], n, False)
            b.link(n, not branch, zero, True)
            prev = (n, branch)
        assert prev is not None, "a chain tree's path has at least its root"
        b.link(prev[0], prev[1], b.leaf(target, weight * scale), True)


def ensemble_node(
    trees: list[Tree], n_targets: int, output: str, input_name: str = "embeddings", scale: float = 1.0
) -> tuple[onnx.NodeProto, dict[str, Any]]:
    """One ``TreeEnsemble`` node summing all ``trees`` (each leaf weight multiplied by ``scale``)."""
    b = _Builder()
    for t in trees:
        _add_tree(b, t, scale)
    node = helper.make_node(
        "TreeEnsemble",
        [input_name],
        [output],
        domain="ai.onnx.ml",
        name="tree_ensemble",
        n_targets=n_targets,
        aggregate_function=AGG_SUM,
        post_transform=0,
        tree_roots=b.roots,
        nodes_modes=numpy_helper.from_array(np.asarray(b.modes, dtype=np.uint8), "nodes_modes"),
        nodes_featureids=b.features,
        nodes_splits=numpy_helper.from_array(np.asarray(b.splits, dtype=np.float32), "nodes_splits"),
        nodes_truenodeids=b.true_ids,
        nodes_trueleafs=b.true_leaf,
        nodes_falsenodeids=b.false_ids,
        nodes_falseleafs=b.false_leaf,
        leaf_targetids=b.leaf_targets,
        leaf_weights=numpy_helper.from_array(np.asarray(b.leaf_weights, dtype=np.float32), "leaf_weights"),
    )
    stats = {
        "n_trees": len(trees),
        "n_onnx_trees": len(b.roots),
        "n_nodes": len(b.modes),
        "n_leaves": len(b.leaf_targets),
    }
    return node, stats


def _model(
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    n_features: int,
    n_classes: int,
    doc: str,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", n_features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_classes])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", AI_ONNX_OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        producer_name="topicserve-training",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


class NotSuitableError(ValueError):
    """The model cannot be encoded compactly in this format (e.g. too many impure leaves)."""


def _node_depths(t: Sklearn) -> np.ndarray:
    depth = np.zeros(t.node_count, dtype=np.int64)
    for node in range(t.node_count):  # sklearn numbers children after their parent
        for child in (t.children_left[node], t.children_right[node]):
            if child != -1:
                depth[child] = depth[node] + 1
    return depth


def random_forest_to_onnx(
    forest: Sklearn, n_features: int, max_chain_ratio: float = 0.25
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """RandomForestClassifier -> probabilities = mean over trees of the leaf class distributions.

    Raises NotSuitableError when impure leaves would need more chain-tree nodes than ``max_chain_ratio``
    of the forest's own nodes (forests grown with min_samples_leaf > 1: use the gather encoding).
    """
    chain_nodes = total_nodes = 0
    for est in forest.estimators_:
        t = est.tree_
        leaves = t.children_left == -1
        extra = np.maximum((t.value[:, 0, :] > 0).sum(axis=1) - 1, 0)
        if extra[leaves].any():
            chain_nodes += int((extra * _node_depths(t))[leaves].sum())
        total_nodes += t.node_count
    if chain_nodes > max_chain_ratio * total_nodes:
        raise NotSuitableError(
            f"impure leaves would add {chain_nodes} chain nodes to {total_nodes} tree nodes; "
            "opset-5 TreeEnsemble leaves carry one target each"
        )
    trees = []
    for est in forest.estimators_:
        t = est.tree_
        is_leaf = t.children_left == -1
        values = t.value[:, 0, :]
        leaf_values = {}
        for node in np.flatnonzero(is_leaf):
            dist = values[node] / values[node].sum()  # sklearn normalises each tree's leaf distribution
            nz = np.flatnonzero(dist)
            order = nz[np.argsort(-dist[nz], kind="stable")]
            leaf_values[int(node)] = [(int(c), float(dist[c])) for c in order]
        trees.append(Tree(t.children_left, t.children_right, t.feature, t.threshold, is_leaf, leaf_values))
    n_classes = int(forest.n_classes_)
    # Leaf weights stay unscaled (pure leaves add exact integers, so tied classes stay exactly tied however
    # onnxruntime's threads group the sums, and ArgMax breaks ties like numpy); one Mul makes the mean.
    node, stats = ensemble_node(trees, n_classes, "votes")
    inv = numpy_helper.from_array(np.asarray(1.0 / len(trees), dtype=np.float32), "inv_n_trees")
    mul = helper.make_node("Mul", ["votes", "inv_n_trees"], ["probabilities"])
    doc = "RandomForestClassifier as ai.onnx.ml TreeEnsemble v5 (nonzero leaf weights only)"
    return _model([node, mul], [inv], n_features, n_classes, doc), stats


def hgb_ovr_to_onnx(ovr: Sklearn, n_features: int) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """OneVsRestClassifier(HistGradientBoostingClassifier) -> normalised one-vs-rest sigmoid scores.

    Matches sklearn: per class raw = baseline + sum of tree values; p_k = sigmoid(raw_k); rows divided by
    their sum (OneVsRestClassifier.predict_proba for single-label problems).
    """
    trees, baselines = [], []
    for k, est in enumerate(ovr.estimators_):
        if not hasattr(est, "_predictors"):
            raise TypeError(f"class {k}: {type(est).__name__} is not a fitted HistGradientBoostingClassifier")
        if est.n_trees_per_iteration_ != 1:
            raise TypeError("only binary HistGradientBoostingClassifier estimators are supported")
        baselines.append(float(np.ravel(est._baseline_prediction)[0]))
        for (pred,) in est._predictors:
            nd = pred.nodes
            if nd["is_categorical"].any():
                raise TypeError("categorical splits are not supported")
            is_leaf = nd["is_leaf"].astype(bool)
            leaf_values = {int(i): [(k, float(nd["value"][i]))] for i in np.flatnonzero(is_leaf)}
            trees.append(
                Tree(
                    nd["left"].astype(np.int64),
                    nd["right"].astype(np.int64),
                    nd["feature_idx"].astype(np.int64),
                    nd["num_threshold"],
                    is_leaf,
                    leaf_values,
                )
            )
    n_classes = len(ovr.estimators_)
    node, stats = ensemble_node(trees, n_classes, "raw")
    base = numpy_helper.from_array(np.asarray(baselines, dtype=np.float32), "baseline")
    axes = numpy_helper.from_array(np.asarray([1], dtype=np.int64), "axis1")
    nodes = [
        node,
        helper.make_node("Add", ["raw", "baseline"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["scores"]),
        helper.make_node("ReduceSum", ["scores", "axis1"], ["total"], keepdims=1),
        helper.make_node("Div", ["scores", "total"], ["probabilities"]),
    ]
    doc = "OneVsRest(HistGradientBoostingClassifier) as ai.onnx.ml TreeEnsemble v5 + sigmoid + normalise"
    return _model(nodes, [base, axes], n_features, n_classes, doc), stats


def random_forest_to_onnx_gather(forest: Sklearn, n_features: int) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """RandomForestClassifier as flat node arrays walked with Gather ops (no TreeEnsemble operator).

    Why: onnxruntime's TreeEnsemble kernel spends ~1.3 us per node building its own structures when a
    session is created, so a 300-tree full-depth forest (~1.1 M nodes) takes well over a second to load
    -- a cold-start cost paid by every new Lambda environment. Here the trees are four plain initializers
    (feature int32, threshold float32, left-child int32, leaf-distribution index int32) that load as fast as
    the bytes can be read, and the graph walks all trees in lockstep for ``max_depth`` steps:

        node <- left[node] + (x[feature[node]] > threshold[node])

    Children are laid out consecutively (right = left + 1); a leaf points to itself with threshold +inf, so
    extra steps keep it in place. The leaf's class distribution is looked up in a small table (row c =
    one-hot class c for pure leaves, further rows for impure ones) and averaged over trees.
    """
    feats, thrs, lefts, leafvals, roots = [], [], [], [], []
    table: dict[tuple[float, ...], int] = {}
    n_classes = int(forest.n_classes_)
    for c in range(n_classes):
        table[tuple(float(c == j) for j in range(n_classes))] = c
    base = 0
    max_depth = 0
    for est in forest.estimators_:
        t = est.tree_
        max_depth = max(max_depth, int(t.max_depth))
        n = t.node_count
        pos = np.empty(n, dtype=np.int64)  # sklearn node -> slot in our layout
        pos[0] = 0
        nxt = 1
        order = [0]
        left_slot = np.zeros(n, dtype=np.int64)
        for node in order:  # BFS; `order` grows while iterating
            lc, rc = t.children_left[node], t.children_right[node]
            if lc != -1:
                pos[lc], pos[rc] = nxt, nxt + 1
                left_slot[node] = nxt
                nxt += 2
                order.extend((lc, rc))
        is_leaf = t.children_left == -1
        f = np.zeros(n, dtype=np.int32)
        th = np.full(n, np.inf, dtype=np.float32)
        lf = np.zeros(n, dtype=np.int32)
        lv = np.zeros(n, dtype=np.int32)
        inner = ~is_leaf
        f[pos[inner]] = t.feature[inner]
        th[pos[inner]] = floor_float32(t.threshold[inner])
        lf[pos[inner]] = base + left_slot[inner]
        lf[pos[is_leaf]] = base + pos[is_leaf]
        values = t.value[:, 0, :]
        for leaf in np.flatnonzero(is_leaf):
            dist = values[leaf] / values[leaf].sum()
            key = tuple(float(v) for v in dist)
            lv[pos[leaf]] = table.setdefault(key, len(table))
        feats.append(f)
        thrs.append(th)
        lefts.append(lf)
        leafvals.append(lv)
        roots.append(base)
        base += n
    # float64 table and sums, like sklearn: float32 sums of fractional (impure-leaf) distributions can break
    # exact ties differently from sklearn and flip the argmax of a rare row
    dist_table = np.asarray(list(table), dtype=np.float64)
    n_trees = len(roots)
    inits = [
        numpy_helper.from_array(np.concatenate(feats), "feature"),
        numpy_helper.from_array(np.concatenate(thrs), "threshold"),
        numpy_helper.from_array(np.concatenate(lefts), "left"),
        numpy_helper.from_array(np.concatenate(leafvals), "leaf_dist"),
        numpy_helper.from_array(dist_table, "dist_table"),
        numpy_helper.from_array(np.asarray([roots], dtype=np.int32), "roots"),
        numpy_helper.from_array(np.asarray([n_trees], dtype=np.int64), "n_trees"),
        numpy_helper.from_array(np.asarray([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.asarray(n_trees, dtype=np.float64), "n_trees_f"),
    ]
    nodes = [
        helper.make_node("Shape", ["embeddings"], ["batch"], start=0, end=1),
        helper.make_node("Concat", ["batch", "n_trees"], ["walk_shape"], axis=0),
        helper.make_node("Expand", ["roots", "walk_shape"], ["node_0"]),
    ]
    for i in range(max_depth):
        cur, nxt_name = f"node_{i}", f"node_{i + 1}"
        nodes += [
            helper.make_node("Gather", ["feature", cur], [f"f_{i}"]),
            helper.make_node("GatherElements", ["embeddings", f"f_{i}"], [f"x_{i}"], axis=1),
            helper.make_node("Gather", ["threshold", cur], [f"t_{i}"]),
            helper.make_node("Greater", [f"x_{i}", f"t_{i}"], [f"g_{i}"]),
            helper.make_node("Cast", [f"g_{i}"], [f"gi_{i}"], to=TensorProto.INT32),
            helper.make_node("Gather", ["left", cur], [f"l_{i}"]),
            helper.make_node("Add", [f"l_{i}", f"gi_{i}"], [nxt_name]),
        ]
    nodes += [
        helper.make_node("Gather", ["leaf_dist", f"node_{max_depth}"], ["dist_idx"]),
        helper.make_node("Gather", ["dist_table", "dist_idx"], ["dists"]),
        helper.make_node("ReduceSum", ["dists", "axis1"], ["votes"], keepdims=0),
        helper.make_node("Div", ["votes", "n_trees_f"], ["mean"]),
        helper.make_node("Cast", ["mean"], ["probabilities"], to=TensorProto.FLOAT),
    ]
    doc = "RandomForestClassifier as flat node arrays walked with Gather (see training/trees.py)"
    model = _model(nodes, inits, n_features, n_classes, doc)
    stats = {"n_trees": n_trees, "n_nodes": int(base), "max_depth": max_depth, "n_distributions": len(table)}
    return model, stats
