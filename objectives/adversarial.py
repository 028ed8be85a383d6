"""Adversarial robustness: accuracy under L-infinity FGSM and PGD (``captum.robust``) at a set eps, and in
verification a strong attack (APGD-CE, APGD-DLR, Square; :mod:`objectives.strong_attack`).

Attacks run in pixel space (the model normalises its own input) and every perturbed input is clamped to the
data range. The search's PGD is a cheap screen and an *upper bound* on robust accuracy; ``strong = true``
(what ``nas verify`` sets) adds the strong attack on the samples that survive PGD and reports the gap between
the two: a large gap says the screen was fooled (gradient masking or an unconverged attack). Besides the
robust accuracies this records an accuracy-vs-eps curve, the median smallest eps that flips a correct
prediction, and gradient-masking warnings: an attack that looks weak because the gradients are useless, or
because it stopped too early, not because the model is robust. Every accuracy carries a Wilson 95% interval.
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._base import EvaluationContext, Objective, ObjectiveResult, register
from .stats import bootstrap_interval, wilson_interval

MASKING_FLAGS = {
    "pgd_above_fgsm": "PGD accuracy is above FGSM accuracy (a multi-step attack should not be weaker)",
    "no_drop_with_eps": "accuracy does not fall as eps grows",
    "noise_as_strong_as_pgd": "random noise of the same L-inf size hurts as much as PGD",
    "pgd_not_converged": "the PGD loss was still rising at the last step (more steps would find more; the screen "
                         "over-states robustness)",
    "strong_gap": "the strong attack breaks clearly more samples than the search's PGD: the screen over-states "
                  "robustness (gradient masking, or a screen too weak for this model)",
}
LOSSES = ("ce", "margin")
ACCURACIES = ("clean_accuracy", "fgsm_accuracy", "pgd_accuracy", "noise_accuracy")
# fewer samples than this left unbroken before the last PGD step: too few to judge convergence by
MIN_CONVERGENCE_SAMPLES = 5
# bootstrap resamples of the median smallest flipping eps (each resample re-runs a small interpolation)
MEDIAN_RESAMPLES = 200


@contextmanager
def quiet_captum() -> Iterator[None]:
    """Silence captum's notice that it switched on ``requires_grad`` for the inputs (expected here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
        yield


def per_sample_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per sample: the loss the attacks ascend (models return logits)."""
    return F.cross_entropy(logits.float(), target, reduction="none")


def margin_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Largest wrong logit minus the true one, per sample (Carlini & Wagner's margin): positive once the
    prediction is wrong, and unlike cross-entropy its gradient does not vanish when the softmax saturates."""
    logits = logits.float()
    true = logits.gather(1, target[:, None]).squeeze(1)
    wrong = logits.masked_fill(F.one_hot(target, logits.shape[1]).bool(), float("-inf"))
    return wrong.max(dim=1).values - true


ATTACK_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": per_sample_loss, "margin": margin_loss}


class LossRecorder:
    """Wraps an attack loss and keeps the per-sample loss and correctness at every point the attack evaluated
    (captum's PGD calls the loss once per step, at the point before the step)."""

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.loss = loss
        self.losses: list[torch.Tensor] = []
        self.correct: list[torch.Tensor] = []
        self.final: torch.Tensor | None = None  # the loss at the point the attack returned (set by its caller)

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        values = self.loss(logits, target)
        self.losses.append(values.detach().float().cpu())
        self.correct.append((logits.detach().argmax(dim=1) == target).cpu())
        return values


def pgd_attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step_size: float,
    data_range: tuple[float, float], random_start: bool = True, loss: str = "ce", recorder: LossRecorder | None = None,
) -> torch.Tensor:
    """Untargeted L-inf PGD (captum) inside the eps-ball around ``x``, clamped to ``data_range``.

    ``loss`` is ``"ce"`` (cross-entropy) or ``"margin"``; ``recorder`` (a :class:`LossRecorder` of that loss)
    collects the loss at every step, for the convergence check.
    """
    from captum.robust import PGD  # imported on use: keeps `nas` startup fast

    attack = PGD(model, recorder or ATTACK_LOSSES[loss], lower_bound=data_range[0], upper_bound=data_range[1])
    with quiet_captum():
        return attack.perturb(x, radius=eps, step_size=step_size, step_num=steps, target=y,
                              random_start=random_start).detach()


def fgsm_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                data_range: tuple[float, float]) -> torch.Tensor:
    """Untargeted one-step FGSM (captum), clamped to ``data_range``."""
    from captum.robust import FGSM

    attack = FGSM(model, per_sample_loss, lower_bound=data_range[0], upper_bound=data_range[1])
    with quiet_captum():
        return attack.perturb(x, epsilon=eps, target=y).detach()


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(dim=1) == y


def median_min_eps(curve_eps: list[float], still_correct: list[torch.Tensor],
                   clean_correct: torch.Tensor) -> float | None:
    """Median over clean-correct samples of the smallest eps that flips them, interpolated on the eps grid.

    ``still_correct[k]`` marks samples robust at ``curve_eps[k]``; a sample counts as flipped at
    ``e`` when any attack up to ``e`` flipped it. ``None``
    when fewer than half of the correct samples flip even at the largest eps tried.
    """
    if not clean_correct.any():
        return None
    survived = clean_correct.clone()
    eps_points, fractions = [0.0], [1.0]
    for eps, correct in zip(curve_eps, still_correct):
        survived &= correct
        eps_points.append(eps)
        fractions.append(float(survived.sum()) / float(clean_correct.sum()))
    if fractions[-1] > 0.5:
        return None
    # survival fraction falls monotonically from 1 to <= 0.5: interpolate where it crosses 0.5
    return float(np.interp(0.5, fractions[::-1], eps_points[::-1]))


def last_step_share(losses: list[torch.Tensor], correct: list[torch.Tensor], final_loss: torch.Tensor,
                    clean: torch.Tensor) -> tuple[float | None, int]:
    """How much of PGD's loss increase came from its last step, on the samples it had not yet broken.

    ``losses[k]`` / ``correct[k]`` are the per-sample loss and correctness at PGD's k-th point (k = 0 is the
    start), ``final_loss`` the loss at the returned point. Over clean-correct samples still correct before the
    last step: ``mean(L_last - L_before_last) / mean(L_last - L_start)``. A converged attack has gained (almost)
    nothing in its last step (share near 0 or below); a linear climb over ``s`` steps gives ``1/s``.
    Returns ``(None, n)`` when fewer than :data:`MIN_CONVERGENCE_SAMPLES` samples are left to judge by
    or the loss did not rise at all, else ``(share, n)``.
    """
    if not losses:
        return None, 0
    active = clean & correct[-1]
    n = int(active.sum())
    if n < MIN_CONVERGENCE_SAMPLES:
        return None, n
    last = float((final_loss[active] - losses[-1][active]).mean())
    total = float((final_loss[active] - losses[0][active]).mean())
    if not math.isfinite(total) or total <= 0:
        return None, n
    return last / total, n


@dataclass
class Screen:
    """Per-sample outcomes of the search's cheap attacks (True: still classified correctly)."""

    clean: list[torch.Tensor] = field(default_factory=list)
    fgsm: list[torch.Tensor] = field(default_factory=list)
    noise: list[torch.Tensor] = field(default_factory=list)
    curve: list[list[torch.Tensor]] = field(default_factory=list)
    losses: list[list[torch.Tensor]] = field(default_factory=list)  # per batch: loss at each PGD point (at eps)
    correct: list[list[torch.Tensor]] = field(default_factory=list)
    final_loss: list[torch.Tensor] = field(default_factory=list)


def _cat_steps(per_batch: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Per-batch lists of per-step tensors -> one tensor per step over all samples."""
    return [torch.cat(step) for step in zip(*per_batch)] if per_batch else []


@register
class Adversarial(Objective):
    """PGD robust accuracy at ``eps`` on a fixed subset of the split (higher is better): a cheap screen, an
    upper bound; with ``strong = true`` also the strong attack's accuracy and the gap between the two.

    ``eps`` is a fraction of the data range (pixels in [0, 1]: eps 0.1 = 25.5/255). ``step_size`` 0
    means ``2.5 * eps / pgd_steps``. The eps curve runs PGD at ``curve_points`` evenly spaced eps up
    to ``curve_max * eps`` (plus ``eps`` itself, which gives the objective value), on the same samples as the
    clean point at 0: by default 0.5, 1, 1.5 and 2 eps, so the curve has five points and its shape can be read
    (about 0.2 s more per trial than two points at the default budget; early-stopping screens use one point).
    """

    name = "adversarial"
    direction = "maximize"
    cost_rank = 30
    worst_value = 0.0
    description = "accuracy under an L-inf PGD attack of size eps (fraction of the data range)"
    params = {
        "eps": {"default": 0.1, "low": 1e-4, "high": 1.0},
        "samples": {"default": 100, "low": 8, "high": 100000},
        "pgd_steps": {"default": 5, "low": 1, "high": 1000},
        "step_size": {"default": 0.0, "low": 0.0, "high": 1.0},
        "random_start": {"default": True},
        # cross-entropy by default: the margin loss ranked 8 Fashion-MNIST models slightly better (Spearman 0.95 vs
        # 0.93, experiments/bench_attack_screen.py) but over-stated a plain digits model more at 5 steps (0.56 vs
        # 0.53), and its loss rises too evenly for the convergence check to see a rushed attack
        "pgd_loss": {"type": str, "default": "ce", "choices": LOSSES,
                     "help": "loss the PGD screen ascends: cross-entropy or the logit margin"},
        "pgd_restarts": {"default": 1, "low": 1, "high": 20,
                         "help": "PGD runs from random starts; a sample is robust only if it survives all"},
        "curve_points": {"default": 4, "low": 1, "high": 20},
        "curve_max": {"default": 2.0, "low": 1.0, "high": 10.0},
        "tolerance": {"default": 0.02, "low": 0.0, "high": 1.0},
        "convergence_margin": {"default": 0.1, "low": 0.0, "high": 1.0,
                               "help": "pgd_not_converged fires when PGD's last step made more than this share of "
                                       "its loss increase on the samples it had not broken yet"},
        "strong": {"default": False,
                   "help": "also run the strong attack (APGD-CE, APGD-DLR, Square; nas verify turns it on)"},
        "strong_samples": {"default": 1000, "low": 8, "high": 100000},
        "strong_steps": {"default": 100, "low": 1, "high": 10000, "help": "APGD iterations per loss"},
        "strong_restarts": {"default": 1, "low": 1, "high": 20, "help": "APGD random restarts"},
        "square_queries": {"default": 100, "low": 0, "high": 100000, "help": "Square attack queries (0: skip it)"},
        "strong_tolerance": {"default": 0.05, "low": 0.0, "high": 1.0,
                             "help": "strong_gap flag: PGD accuracy above the strong attack's by more than this"},
    }
    metrics = ("clean_accuracy", "fgsm_accuracy", "pgd_accuracy", "noise_accuracy", "median_min_eps", "masking_flags",
               "strong_accuracy", "strong_gap")
    verify_options = {"strong": True, "samples": 1000, "strong_samples": 1000}

    def curve_eps(self) -> list[float]:
        """Relative eps values of the curve: ``curve_points`` evenly up to ``curve_max * eps``, plus ``eps``."""
        eps, points = float(self.options["eps"]), int(self.options["curve_points"])
        top = float(self.options["curve_max"])
        grid = {round(eps * top * k / points, 8) for k in range(1, points + 1)} | {round(eps, 8)}
        return sorted(grid)

    def step_size(self, radius: float, scale: float) -> float:
        """PGD's step in pixel units at ``radius`` (pixel units): the option, else 2.5 radius / steps."""
        return float(self.options["step_size"]) * scale or 2.5 * radius / int(self.options["pgd_steps"])

    def _pgd(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, radius: float, scale: float,
             data_range: tuple[float, float], recorder: LossRecorder | None) -> torch.Tensor:
        """Correct after PGD with every restart (later restarts only on the samples still correct)."""
        steps, loss = int(self.options["pgd_steps"]), str(self.options["pgd_loss"])
        still = _correct(model, x, y)
        for restart in range(int(self.options["pgd_restarts"])):
            index = still.nonzero().flatten()
            if restart and not len(index):
                break
            xs, ys = (x, y) if restart == 0 else (x[index], y[index])
            adversarial = pgd_attack(model, xs, ys, radius, steps, self.step_size(radius, scale), data_range,
                                     bool(self.options["random_start"]), loss, recorder if restart == 0 else None)
            survived = _correct(model, adversarial, ys)
            if restart == 0:
                if recorder is not None:  # the loss at the returned point closes the record
                    with torch.no_grad():
                        recorder.final = ATTACK_LOSSES[loss](model(adversarial), ys).float().cpu()
                still &= survived
            else:
                still[index] = survived
        return still

    def _screen(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, context: EvaluationContext) -> Screen:
        low, high = context.data_range
        scale = high - low
        grid = self.curve_eps()
        at_eps = grid.index(round(float(self.options["eps"]), 8))
        eps = float(self.options["eps"]) * scale
        screen = Screen(curve=[[] for _ in grid])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(context.seed)  # PGD's random start draws from the global generator
            generator = torch.Generator().manual_seed(context.seed)
            for start in range(0, len(x), context.batch_size):
                xb = x[start : start + context.batch_size].to(context.device)
                yb = y[start : start + context.batch_size].to(context.device)
                # robust = correct on the clean input and still correct after the perturbation
                correct = _correct(model, xb, yb)
                screen.clean.append(correct.cpu())
                fgsm = fgsm_attack(model, xb, yb, eps, context.data_range)
                screen.fgsm.append((correct & _correct(model, fgsm, yb)).cpu())
                signs = torch.randint(0, 2, xb.shape, generator=generator).to(xb) * 2 - 1
                screen.noise.append((correct & _correct(model, (xb + eps * signs).clamp(low, high), yb)).cpu())
                for index, point in enumerate(grid):
                    recorder = LossRecorder(ATTACK_LOSSES[str(self.options["pgd_loss"])]) if index == at_eps else None
                    still = self._pgd(model, xb, yb, point * scale, scale, context.data_range, recorder)
                    screen.curve[index].append(still.cpu())
                    if recorder is not None:
                        screen.losses.append(recorder.losses)
                        screen.correct.append(recorder.correct)
                        screen.final_loss.append(recorder.final)
        return screen

    def _evaluate(self, model: nn.Module, context: EvaluationContext) -> ObjectiveResult:
        strong = bool(self.options["strong"])
        n_screen = int(self.options["samples"])
        n_strong = int(self.options["strong_samples"]) if strong else 0
        # one subset for both attacks: the screen's samples are the first of the strong attack's (or the reverse),
        # so the gap compares the two on the same inputs
        x_all, y_all = context.subset(max(n_screen, n_strong))
        x, y = x_all[:n_screen], y_all[:n_screen]
        grid = self.curve_eps()
        relative = float(self.options["eps"])
        screen = self._screen(model, x, y, context)
        clean_correct = torch.cat(screen.clean)
        still_correct = [torch.cat(parts) for parts in screen.curve]
        pgd_robust = still_correct[grid.index(round(relative, 8))]
        outcomes = {"clean_accuracy": clean_correct, "fgsm_accuracy": torch.cat(screen.fgsm),
                    "pgd_accuracy": pgd_robust, "noise_accuracy": torch.cat(screen.noise)}
        accuracies = {metric: float(flags.float().mean()) for metric, flags in outcomes.items()}
        intervals = {metric: wilson_interval(int(flags.sum()), len(flags)) for metric, flags in outcomes.items()}
        samples = {metric: len(flags) for metric, flags in outcomes.items()}
        eps_curve = [{"eps": point, "accuracy": float(correct.float().mean())}
                     for point, correct in zip(grid, still_correct)]

        median = median_min_eps(grid, still_correct, clean_correct)
        median_interval = self._median_interval(grid, still_correct, clean_correct, context)
        share, judged = last_step_share(_cat_steps(screen.losses), _cat_steps(screen.correct),
                                        torch.cat(screen.final_loss), clean_correct)
        converged = share is None or share <= float(self.options["convergence_margin"])
        flags = self.masking_flags(accuracies["clean_accuracy"], accuracies["fgsm_accuracy"],
                                   accuracies["pgd_accuracy"], accuracies["noise_accuracy"],
                                   [point["accuracy"] for point in eps_curve])
        if not converged:
            flags.append("pgd_not_converged")
        details: dict[str, Any] = {
            "eps": relative,
            **accuracies,
            "eps_curve": [{"eps": 0.0, "accuracy": accuracies["clean_accuracy"]}, *eps_curve],
            "median_min_eps": median,
            "pgd_steps": int(self.options["pgd_steps"]),
            "samples": len(x),
            "convergence": {"last_step_share": share, "samples_judged": judged,
                            "margin": float(self.options["convergence_margin"])},
        }
        metrics = {
            **accuracies,
            # None (more than half survive the largest eps) is recorded as that eps: a lower bound
            "median_min_eps": median if median is not None else grid[-1],
        }
        intervals["median_min_eps"] = median_interval
        samples["median_min_eps"] = int(clean_correct.sum())
        if strong:
            found = self._strong(model, x_all[:n_strong], y_all[:n_strong], pgd_robust, context)
            metrics.update(strong_accuracy=found["accuracy"], strong_gap=found["gap"])
            intervals.update(strong_accuracy=found["interval"], strong_gap=found["gap_interval"])
            samples.update(strong_accuracy=found["samples"], strong_gap=found["gap_samples"])
            details["strong"] = found["details"]
            if found["gap"] > float(self.options["strong_tolerance"]):
                flags.append("strong_gap")
        details.update(masking_flags=flags, masking_reasons=[MASKING_FLAGS[flag] for flag in flags])
        # how many gradient-masking signs fired (names in details); require {max = 0} to reject such models
        metrics["masking_flags"] = float(len(flags))
        return ObjectiveResult(value=accuracies["pgd_accuracy"], metrics=metrics, details=details,
                               intervals=intervals, samples=samples, settings=self.settings(len(x), n_strong))

    def _median_interval(self, grid: list[float], still_correct: list[torch.Tensor], clean: torch.Tensor,
                         context: EvaluationContext) -> tuple[float, float]:
        """Seeded bootstrap over samples of the median smallest flipping eps (as the metric records it)."""
        stacked = torch.stack([clean, *still_correct], dim=1).numpy()

        def statistic(rows: np.ndarray) -> float:
            flags = torch.from_numpy(np.asarray(rows, dtype=bool).reshape(-1, stacked.shape[1]))
            found = median_min_eps(grid, list(flags[:, 1:].T), flags[:, 0])
            return grid[-1] if found is None else found

        index = np.arange(len(stacked))
        return bootstrap_interval(lambda rows: statistic(stacked[rows.astype(int)]), index,
                                  seed=context.split_seed("adversarial", "median_min_eps"), resamples=MEDIAN_RESAMPLES)

    def _strong(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, pgd_robust: torch.Tensor,
                context: EvaluationContext) -> dict[str, Any]:
        """The strong attack on ``x`` (the screen's samples first): robust accuracy, the gap to the screen."""
        from .strong_attack import ATTACKS, strong_attack

        shared = min(len(pgd_robust), len(x))
        start = torch.ones(len(x), dtype=torch.bool)
        start[:shared] = pgd_robust[:shared]  # samples PGD already broke are not attacked again
        attacks = tuple(name for name in ATTACKS if name != "square" or int(self.options["square_queries"]) > 0)
        scale = context.data_range[1] - context.data_range[0]
        result = strong_attack(
            model, x, y, float(self.options["eps"]) * scale, context.data_range, context.num_classes,
            steps=int(self.options["strong_steps"]), restarts=int(self.options["strong_restarts"]),
            queries=int(self.options["square_queries"]), attacks=attacks, robust=start,
            seed=context.split_seed("adversarial", "strong"), device=context.device, batch_size=context.batch_size)
        robust = result.robust
        # on the shared samples strong-robust implies PGD-robust, so the gap is itself a proportion:
        # the share of samples the screen called robust and the strong attack broke
        broken = int((pgd_robust[:shared] & ~robust[:shared]).sum())
        return {
            "accuracy": result.accuracy, "interval": wilson_interval(int(robust.sum()), len(robust)),
            "samples": len(robust), "gap": broken / shared if shared else math.nan,
            "gap_interval": wilson_interval(broken, shared), "gap_samples": shared,
            "details": {"accuracy": result.accuracy, "broken_by": {"pgd": int((result.clean & ~start).sum()),
                                                                   **result.flipped},
                        "seconds": result.seconds, "skipped": result.skipped, "samples": len(robust)},
        }

    def settings(self, n_screen: int, n_strong: int) -> dict[str, Any]:
        """How the numbers were obtained, for the card and verify's output."""
        options = self.options
        steps = int(options["pgd_steps"])
        step = float(options["step_size"]) or 2.5 * float(options["eps"]) / steps
        settings: dict[str, Any] = {
            "eps": float(options["eps"]),
            "norm": "L-inf (eps and step sizes relative to the data range)",
            "pgd": {"role": "search screen, an upper bound on robust accuracy", "library": "captum",
                    "steps": steps, "step_size": step, "restarts": int(options["pgd_restarts"]),
                    "loss": "cross-entropy" if options["pgd_loss"] == "ce" else "logit margin",
                    "random_start": bool(options["random_start"]), "samples": n_screen,
                    "convergence_margin": float(options["convergence_margin"])},
            "intervals": "Wilson 95% for accuracies and the strong gap; bootstrap "
                         f"({MEDIAN_RESAMPLES} resamples) for median min eps",
        }
        if n_strong:
            from .strong_attack import ATTACKS

            attacks = [name for name in ATTACKS if name != "square" or int(options["square_queries"]) > 0]
            settings["strong"] = {
                "role": "verification: worst case per sample over PGD and every strong attack",
                "library": "adversarial-robustness-toolbox", "attacks": attacks,
                "apgd_steps": int(options["strong_steps"]), "apgd_restarts": int(options["strong_restarts"]),
                "apgd_initial_step": 2 * float(options["eps"]), "square_queries": int(options["square_queries"]),
                "samples": n_strong, "gap_tolerance": float(options["strong_tolerance"])}
        return settings

    def masking_flags(self, clean: float, fgsm: float, pgd: float, noise: float, curve: list[float]) -> list[str]:
        """Signs of gradient masking (Athalye et al. 2018): the attack is weak for the wrong reason."""
        tol = float(self.options["tolerance"])
        flags = []
        if pgd > fgsm + tol:
            flags.append("pgd_above_fgsm")
        increases = any(later > earlier + tol for earlier, later in zip(curve, curve[1:]))
        if clean > tol and (curve[-1] >= clean - tol or increases):
            flags.append("no_drop_with_eps")
        if clean > tol and noise <= pgd + tol:
            flags.append("noise_as_strong_as_pgd")
        return flags
