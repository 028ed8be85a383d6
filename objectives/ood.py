"""Out-of-distribution overconfidence: does the model say "I am sure" on inputs it never saw?

Scores come from pytorch-ood detectors and metrics (AUROC, FPR@95TPR with OOD as the positive class),
one OOD set at a time against in-distribution inputs of the split, plus the mean max-softmax
confidence on each set -- the seed paper's "overconfidence". Ensembles are scored on their averaged
softmax (the model's output is the log of it); energy and max-logit use the mean over their members.

Held out: every OOD set is generated from a seed of the study *and* the split (``context.split_seed``),
never from the trial, and the sets built from real material draw from a pool per split (other fonts,
other digit images; :mod:`objectives.ood_sets`). Every model of a study is scored on the same inputs, and
``nas verify`` (test split) on inputs the search never saw. Sets are grouped into near- and far-OOD
(OpenOOD's convention) and the worst AUROC of each group is reported beside the overall worst case.
Every number carries a seeded bootstrap 95% interval (in- and out-of-distribution scores resampled apart).

pytorch-ood is imported where it is used: it pulls in torchvision's model zoo, which would slow
down every ``nas`` command that merely lists objectives.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import ood_sets
from ._base import EvaluationContext, Objective, ObjectiveResult, register
from .stats import bootstrap_interval

DETECTORS = ("msp", "energy", "maxlogit", "mahalanobis")
# Near- and far-OOD, the hard families included, so the worst case is not flattered by easy sets. Left out:
# 'digits' and 'typed_digits' (in-distribution in meaning for digit data), 'flipped' (symmetric classes).
DEFAULT_SETS = ["uniform", "gaussian", "binary_noise", "constant", "shuffled", "inverted", "letters", "glyphs",
                "scribbles"]
VERIFY_DETECTORS = ["msp", "energy", "maxlogit"]
HISTOGRAM_BINS = 20
# Percentile bootstrap resamples per interval: a few hundred, vectorized and shared by every statistic of a detector
# (one joint bootstrap). Search, 9 sets of 200: about 0.5 s a trial; verify, 9 sets of 1,000 and 3 detectors:
# about 7-10 s in all on a busy 2-core machine, most of it the bootstrap.
SEARCH_RESAMPLES, VERIFY_RESAMPLES = 200, 300
TPR = 0.95  # FPR95: the false positive rate where 95% of an OOD set is caught
AGGREGATE_METRICS = ("min_auroc", "near_min_auroc", "far_min_auroc", "max_fpr95")


def confidence_histogram(confidence: torch.Tensor) -> dict[str, list[float]]:
    """Max-softmax confidences binned on [0, 1] (what the dashboard draws)."""
    counts, edges = np.histogram(confidence.numpy(), bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    return {"edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]}


def _class_heads(model: nn.Module, num_classes: int) -> list[nn.Linear]:
    """The final linear layers (one per ensemble member): their inputs are the penultimate features."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not heads:
        raise ValueError("detector 'mahalanobis' needs a model whose last layer is nn.Linear(features, num_classes)")
    return heads


class _Scorer:
    """Runs the model once per batch and turns its outputs into outlier scores of every detector asked for."""

    def __init__(self, model: nn.Module, detectors: list[str], context: EvaluationContext, fit_samples: int) -> None:
        self.model, self.detectors, self.context = model, detectors, context
        self.members = bool({"energy", "maxlogit"} & set(detectors))
        self.heads = _class_heads(model, context.num_classes) if "mahalanobis" in detectors else []
        self.mahalanobis = None
        if self.heads:
            from pytorch_ood.detector import Mahalanobis

            if context.train_x is None or context.train_y is None:
                raise ValueError("detector 'mahalanobis' is fitted on training features, but the context has no "
                                 "training data")
            # seeded by the study (not the split): the detector is part of the model being judged
            generator = torch.Generator().manual_seed(context.seed)
            index = torch.randperm(len(context.train_x), generator=generator)[:fit_samples]
            features, _, _ = self._run(context.train_x[index])
            self.mahalanobis = Mahalanobis(None).fit_features(features, context.train_y[index])

    @torch.no_grad()
    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features or empty, logits, member logits (members, n, classes) or empty) for ``x``, batched."""
        captured: list[torch.Tensor] = []
        hooks = [head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].flatten(1)))
                 for head in self.heads]
        features, logits, members = [], [], []
        try:
            for start in range(0, len(x), self.context.batch_size):
                batch = x[start : start + self.context.batch_size].to(self.context.device)
                captured.clear()
                out = self.model(batch).float()
                logits.append(out.cpu())
                if self.members:
                    # an ensemble's output is a log-probability (energy 0, max logit = log MSP): use its members
                    member = self.model.member_logits(batch) if hasattr(self.model, "member_logits") else out[None]
                    members.append(member.float().cpu())
                if captured:
                    features.append(torch.cat(captured, dim=1).cpu())
        finally:
            for hook in hooks:
                hook.remove()
        empty = torch.empty(0)
        return (torch.cat(features) if features else empty, torch.cat(logits),
                torch.cat(members, dim=1) if members else empty)

    def __call__(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({detector: outlier scores}, max-softmax confidence); larger score = more likely OOD."""
        from pytorch_ood.detector import EnergyBased, MaxLogit, MaxSoftmax

        features, logits, members = self._run(x)
        scores = {}
        for detector in self.detectors:
            if detector == "msp":
                scores[detector] = MaxSoftmax.score(logits)
            elif detector == "energy":
                scores[detector] = torch.stack([EnergyBased.score(member) for member in members]).mean(0)
            elif detector == "maxlogit":
                scores[detector] = torch.stack([MaxLogit.score(member) for member in members]).mean(0)
            else:
                scores[detector] = self.mahalanobis.predict_features(features)
        return scores, torch.softmax(logits, dim=1).max(dim=1).values


def separation(id_scores: torch.Tensor, ood_scores: torch.Tensor) -> tuple[float, float]:
    """(AUROC, FPR@95TPR) of telling ``ood_scores`` from ``id_scores`` (pytorch-ood, OOD positive)."""
    from pytorch_ood.metrics.functional import auroc, fpr_at_tpr

    scores = torch.cat([id_scores, ood_scores]).double()
    labels = torch.cat([torch.zeros(len(id_scores)), -torch.ones(len(ood_scores))]).long()
    return float(auroc(scores, labels)), float(fpr_at_tpr(scores, labels, TPR))


# ------------------------------------------------------------------------------- bootstrap statistics
# ``stats.bootstrap_interval(vectorized=True)`` hands these arrays of shape (..., n) and ``axis=-1``.
def auroc_along(id_scores: np.ndarray, ood_scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """AUROC (OOD positive, ties count half) along ``axis``: the Mann-Whitney U of the OOD scores over the
    number of pairs (scipy, vectorized); the same number as pytorch-ood's ``auroc``."""
    from scipy.stats import mannwhitneyu

    pairs = id_scores.shape[axis] * ood_scores.shape[axis]
    return mannwhitneyu(ood_scores, id_scores, axis=axis, method="asymptotic").statistic / pairs


def fpr95_along(id_scores: np.ndarray, ood_scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """pytorch-ood's FPR@95TPR along ``axis``, vectorized for the bootstrap (the library scores one curve at a
    time, and a bootstrap needs hundreds): the threshold is the k-th largest OOD score for the least k with
    k / n_ood >= 0.95 (the first point of the ROC curve reaching that TPR), the FPR the share of in-distribution
    scores at or above it. A test holds it equal to ``pytorch_ood.metrics.functional.fpr_at_tpr``."""
    inside, outside = np.moveaxis(id_scores, axis, -1), np.moveaxis(ood_scores, axis, -1)
    n = outside.shape[-1]
    k = min(n, max(1, int(np.ceil(TPR * n))))
    while k > 1 and (k - 1) / n >= TPR:  # float64 rounding, exactly as the library compares
        k -= 1
    while k < n and k / n < TPR:
        k += 1
    threshold = np.sort(outside, axis=-1)[..., n - k]
    return np.mean(inside >= threshold[..., None], axis=-1)


def _max_mean(*confidences: np.ndarray, axis: int = -1) -> np.ndarray:
    """The highest mean confidence over the OOD sets (``max_ood_confidence``), vectorized."""
    return np.max([np.mean(values, axis=axis) for values in confidences], axis=0)


Reduction = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``reduce(aurocs, fpr95s) -> statistic``: both ``(sets, ...)``, one row per OOD set."""


class _JointBootstrap:
    """95% intervals of every AUROC/FPR95 statistic of one detector, from the same resamples.

    ``stats.bootstrap_interval`` draws its resamples from its seed and the samples' shapes alone, so every call
    with this seed and these samples (the in-distribution scores, then each OOD set's) resamples them the same way.
    The per-set AUROCs and FPR95s of those resamples are computed once and each statistic (one set, the worst,
    a group's worst, the mean) reads them: one joint bootstrap, at the cost of a single one.
    """

    def __init__(self, id_scores: torch.Tensor, ood_scores: list[torch.Tensor], seed: int, resamples: int) -> None:
        self.samples = [scores.double().numpy() for scores in (id_scores, *ood_scores)]
        self.seed, self.resamples = seed, resamples
        self._tables: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def _table(self, arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
        # two kinds of calls: the measured samples (1-D) and the resamples (2-D, the same in every call)
        key = tuple((array.shape, array.reshape(-1, array.shape[-1])[0].tobytes()) for array in arrays)
        if key not in self._tables:
            id_scores, *ood_scores = arrays
            self._tables[key] = (np.stack([auroc_along(id_scores, scores) for scores in ood_scores]),
                                 np.stack([fpr95_along(id_scores, scores) for scores in ood_scores]))
        return self._tables[key]

    def interval(self, reduce: Reduction) -> tuple[float, float]:
        def statistic(*arrays: np.ndarray, axis: int = -1) -> np.ndarray:
            return reduce(*self._table(tuple(np.moveaxis(array, axis, -1) for array in arrays)))

        low, high = bootstrap_interval(statistic, *self.samples, seed=self.seed, resamples=self.resamples,
                                       vectorized=True)
        if high - low < 1e-12 and (low >= 1.0 - 1e-12 or high <= 1e-12):
            # Every resample agrees on a perfect (or perfectly wrong) separation: the bootstrap cannot see past the
            # sample. Rule of three: no failure in n draws bounds the failure rate by 3/n at 95%, with n the
            # smallest of the samples (the in-distribution set or an OOD set).
            bound = 3.0 / min(len(sample) for sample in self.samples)
            low, high = (1.0 - bound, 1.0) if low >= 1.0 - 1e-12 else (0.0, bound)
        return low, high


@register
class OOD(Objective):
    """Worst-case (or mean) AUROC of separating in-distribution inputs from each OOD set.

    Options: ``sets`` (names from :func:`objectives.ood_sets.available`), ``detector``
    (msp, energy, maxlogit, mahalanobis), ``aggregate`` (min, mean), ``samples`` per set (and as many
    in-distribution inputs), ``fit_samples`` (training inputs the Mahalanobis detector is fitted on),
    ``extra_detectors`` (reported beside ``detector``: ``<detector>_min_auroc`` ...; verify adds msp, energy
    and maxlogit), ``resamples`` (bootstrap resamples per interval).
    """

    name = "ood"
    direction = "maximize"
    cost_rank = 10
    worst_value = 0.0
    description = "worst-case AUROC separating in-distribution inputs from the OOD sets (1 = perfect, 0.5 = blind)"
    params = {
        "sets": {"default": DEFAULT_SETS, "type": list},
        "detector": {"default": "msp", "choices": DETECTORS},
        "aggregate": {"default": "min", "choices": ("min", "mean")},
        "samples": {"default": 200, "low": 10, "high": 100000},
        "fit_samples": {"default": 1000, "low": 20, "high": 1000000},
        "extra_detectors": {"default": [], "type": list, "choices": DETECTORS, "allow_empty": True,
                            "help": "detectors reported beside 'detector' (<detector>_min_auroc ...)"},
        "resamples": {"default": SEARCH_RESAMPLES, "low": 50, "high": 100000,
                      "help": "bootstrap resamples behind each 95% interval"},
    }
    # verify judges: five times the OOD samples, more resamples, and the other detectors beside the configured one
    detail_prefixes = ("auroc_", "fpr95_", "confidence_")  # one per set: verify's table shows the aggregates
    verify_options = {"samples": 1000, "extra_detectors": VERIFY_DETECTORS, "resamples": VERIFY_RESAMPLES}
    metrics = (
        "min_auroc", "near_min_auroc", "far_min_auroc", "mean_auroc", "max_fpr95", "max_ood_confidence",
        "id_confidence",
        *(f"{kind}_{name}" for name in ood_sets.available() for kind in ("auroc", "fpr95", "confidence")),
        *(f"{detector}_{metric}" for detector in DETECTORS for metric in AGGREGATE_METRICS),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        sets = self.options["sets"]
        if not isinstance(sets, list) or not sets or not all(isinstance(s, str) for s in sets):
            raise ValueError(f"sets must be a non-empty list of names; allowed: {', '.join(ood_sets.available())}")
        unknown = [s for s in sets if s not in ood_sets.available()]
        if unknown:
            raise ValueError(f"sets: unknown OOD set(s) {unknown}; allowed: {', '.join(ood_sets.available())}")
        if len(set(sets)) != len(sets):
            raise ValueError(f"sets: each OOD set may appear once, got {sets}")
        extra = self.options["extra_detectors"]
        if not isinstance(extra, list) or not all(isinstance(d, str) for d in extra):
            raise ValueError(f"extra_detectors must be a list of names; allowed: {', '.join(DETECTORS)}")
        unknown = [d for d in extra if d not in DETECTORS]
        if unknown:
            raise ValueError(f"extra_detectors: unknown detector(s) {unknown}; allowed: {', '.join(DETECTORS)}")
        if len(set(extra)) != len(extra):
            raise ValueError(f"extra_detectors: each detector may appear once, got {extra}")

    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        sets: list[str] = self.options["sets"]
        detector: str = self.options["detector"]
        extra = [d for d in self.options["extra_detectors"] if d != detector]
        resamples = int(self.options["resamples"])
        seen = sorted(set(sets) & set(context.trained_outlier_families))
        if seen:
            raise ValueError(
                f"OOD set(s) {seen} were used for outlier-exposure training of this model; scoring on them would hide "
                "how it treats unseen outliers -- score on other sets"
            )
        depicted = {name: ood_sets.in_distribution(name, context.class_names) for name in sets}
        depicted = {name: classes for name, classes in depicted.items() if classes}
        if depicted:
            raise ValueError(
                f"OOD set(s) {sorted(depicted)} depict classes of the in-distribution data "
                f"({', '.join(sorted(set().union(*depicted.values())))}): they are not OOD for this model -- score on "
                "other sets (for the letters data set A-J: letters_kt)"
            )
        x_id, _ = context.subset(int(self.options["samples"]))
        scorer = _Scorer(model, [detector, *extra], context, int(self.options["fit_samples"]))
        id_scores, id_confidence = scorer(x_id)
        details: dict[str, Any] = {
            "detector": detector,
            "split": context.split,
            "in_distribution": {"mean_confidence": float(id_confidence.mean()),
                                "histogram": confidence_histogram(id_confidence)},
            "sets": {},
        }
        ood_scores: dict[str, dict[str, torch.Tensor]] = {}
        confidences: dict[str, torch.Tensor] = {}
        skipped = []
        for name in sets:
            if not ood_sets.applicable(name, context.x):
                skipped.append(name)
                continue
            # seeded by the study and the split, never the trial: every model of a study sees the same inputs,
            # and verify (test) other inputs than the search (val)
            generator = torch.Generator().manual_seed(context.split_seed("ood", name))
            x_ood = ood_sets.generate(name, context.x, len(x_id), generator, context.y, context.data_range,
                                      split=context.split)
            ood_scores[name], confidences[name] = scorer(x_ood)
        if skipped:
            details["skipped_sets"] = {"sets": skipped, "reason": "image-only sets do not apply to signal inputs"}
        if not ood_scores:
            raise ValueError(f"none of the OOD sets {sets} applies to inputs of shape {list(context.input_shape)}")
        groups = {group: [name for name in ood_scores if ood_sets.group(name) == group] for group in ood_sets.GROUPS}

        def interval(statistic: Callable[..., Any], *samples: torch.Tensor, label: str) -> tuple[float, float]:
            arrays = [sample.double().numpy() for sample in samples]
            return bootstrap_interval(statistic, *arrays, seed=context.split_seed("ood", "bootstrap", label),
                                      resamples=resamples, vectorized=True)

        names = list(ood_scores)
        metrics: dict[str, float] = {"id_confidence": float(id_confidence.mean())}
        intervals = {"id_confidence": interval(np.mean, id_confidence, label="id_confidence")}
        for name in names:
            confidence = float(confidences[name].mean())
            details["sets"][name] = {"group": ood_sets.group(name), "mean_confidence": confidence,
                                     "histogram": confidence_histogram(confidences[name])}
            metrics[f"confidence_{name}"] = confidence
            intervals[f"confidence_{name}"] = interval(np.mean, confidences[name], label=f"confidence_{name}")
        metrics["max_ood_confidence"] = max(metrics[f"confidence_{name}"] for name in names)
        intervals["max_ood_confidence"] = interval(_max_mean, *confidences.values(), label="max_ood_confidence")
        if extra:
            details["detectors"] = {}
        for scorer_name in [detector, *extra]:
            joint = _JointBootstrap(id_scores[scorer_name], [ood_scores[name][scorer_name] for name in names],
                                    context.split_seed("ood", "bootstrap", scorer_name), resamples)
            aurocs, fprs = zip(*(separation(id_scores[scorer_name], ood_scores[name][scorer_name]) for name in names))
            prefix = "" if scorer_name == detector else f"{scorer_name}_"
            if prefix:
                details["detectors"][scorer_name] = {name: {"auroc": area, "fpr95": fpr95}
                                                     for name, area, fpr95 in zip(names, aurocs, fprs)}
            else:
                for index, name in enumerate(names):
                    details["sets"][name].update(auroc=aurocs[index], fpr95=fprs[index])
                    metrics[f"auroc_{name}"], metrics[f"fpr95_{name}"] = aurocs[index], fprs[index]
                    intervals[f"auroc_{name}"] = joint.interval(lambda a, f, index=index: a[index])
                    intervals[f"fpr95_{name}"] = joint.interval(lambda a, f, index=index: f[index])
                metrics["mean_auroc"] = float(np.mean(aurocs))
                intervals["mean_auroc"] = joint.interval(lambda a, f: a.mean(axis=0))
            metrics[prefix + "min_auroc"] = min(aurocs)
            intervals[prefix + "min_auroc"] = joint.interval(lambda a, f: a.min(axis=0))
            metrics[prefix + "max_fpr95"] = max(fprs)
            intervals[prefix + "max_fpr95"] = joint.interval(lambda a, f: f.max(axis=0))
            for group, members in groups.items():
                rows = [names.index(member) for member in members]
                if rows:
                    metrics[f"{prefix}{group}_min_auroc"] = min(aurocs[row] for row in rows)
                    intervals[f"{prefix}{group}_min_auroc"] = joint.interval(lambda a, f, rows=rows: a[rows].min(0))
        # headline numbers first (the card and verify list metrics in this order), then each set, then other detectors
        headline = ["min_auroc", "near_min_auroc", "far_min_auroc", "mean_auroc", "max_fpr95", "max_ood_confidence",
                    "id_confidence"]
        per_set = [f"{kind}_{name}" for name in names for kind in ("auroc", "fpr95", "confidence")]
        metrics = {metric: metrics[metric] for metric in [*headline, *per_set, *metrics] if metric in metrics}
        n = len(x_id)
        samples = {metric: n for metric in metrics}
        value = metrics["min_auroc"] if self.options["aggregate"] == "min" else metrics["mean_auroc"]
        return ObjectiveResult(value=value, metrics=metrics, details=details, intervals=intervals, samples=samples,
                               settings=self._settings(context, detector, extra, groups, skipped, n, resamples))

    def _settings(self, context: EvaluationContext, detector: str, extra: list[str], groups: dict[str, list[str]],
                  skipped: list[str], n: int, resamples: int) -> dict[str, Any]:
        """How the numbers were obtained, for the card and verify's output."""
        settings: dict[str, Any] = {"detector": detector}
        if extra:
            settings["extra_detectors"] = extra
        settings["sets"] = {group: members for group, members in groups.items() if members}
        if skipped:
            settings["skipped_sets"] = skipped
        settings["samples_per_set"] = f"{n} in-distribution ({context.split} split) and {n} per OOD set"
        settings["generated_from"] = (f"the study seed and the {context.split} split: the same inputs for every trial, "
                                      "other inputs in the other split")
        scored = set().union(*groups.values())
        if scored & {"letters", "letters_kt", "glyphs", "typed_digits"}:
            settings[f"{context.split}_fonts"] = ood_sets.font_names(context.split)
        if "digits" in scored:
            pool = ood_sets.digit_pool(context.split)
            settings["digits_pool"] = (f"{len(pool)} of scikit-learn's {len(ood_sets.digit_pool(None))} digits "
                                       "(the other split has the rest)")
        settings["intervals"] = (f"seeded bootstrap, {resamples} resamples, in- and out-of-distribution scores "
                                 "resampled apart (worst cases: every set at once); a separation that every resample "
                                 "finds perfect gets the rule-of-three bound 3/n instead of a point")
        return settings
