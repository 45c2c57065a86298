"""Conditional metrics of a class-conditional generator: is a sample of class c an image of class c,
and how varied are the images of one class?

* Accuracy per classifier: the fraction of samples of each requested class that a classifier
  assigns to that class (its `targets`), streamed as per-class hit counts. The classifiers are
  the small CNNs of `classifier` (`class`; `shape`, colour-blind, on the built-in shapes) and,
  for data whose classes are ImageNet's (WordNet ids n########) with Inception weights that have
  their classifier, Inception's own 1008-way head restricted to the data's classes.
  Each comes with its ceiling: the accuracy on real images it did not train on.
* Intra-class FID / KID: FID and KID between the generated and the real images of each class
  (from the kept feature samples and their labels), averaged over classes. Accuracy cannot see
  a class drawn one way only; these can. Computed when every class has at least `MIN_INTRA`
  samples on both sides; per-class FIDs from few samples are biased upwards (compare only at
  equal counts), KID is unbiased.
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np
import torch

from .fid import FIDStats, frechet_distance

MIN_INTRA = 50
IMAGENET_ID = re.compile(r"n\d{8}")


class ClassAccuracy:
    """Per-class hit counts of one classifier: `update(hit (B,) bool, classes (B,) long)`."""

    def __init__(self, n_classes: int, device="cpu"):
        self.correct = torch.zeros(n_classes, dtype=torch.float64, device=device)
        self.total = torch.zeros(n_classes, dtype=torch.float64, device=device)

    def update(self, hit: torch.Tensor, classes: torch.Tensor) -> None:
        classes = classes.to(self.total.device)
        n = len(self.total)
        self.correct += torch.bincount(classes, hit.to(self.total), minlength=n)
        self.total += torch.bincount(classes, minlength=n).to(self.total)

    def all_reduce(self) -> None:
        import torch.distributed as dist
        dist.all_reduce(self.correct)
        dist.all_reduce(self.total)

    def result(self) -> tuple[float, list[Optional[float]]]:
        """(overall accuracy, per-class accuracy (None for a class without samples))."""
        total = self.total.cpu()
        per_class = (self.correct.cpu() / total.clamp_min(1)).tolist()
        return (float(self.correct.sum() / total.sum()),
                [a if t > 0 else None for a, t in zip(per_class, total.tolist())])


class InceptionHead:
    """Inception's 1008 logits read as a classifier of the data's ImageNet classes: `columns[c]`
    is the logit of class c, and a prediction is the class whose column is largest.

    The 2015 graph orders its outputs in its own way; instead of shipping TensorFlow's label
    map, the columns are recovered from labelled real features (the reference statistics'
    feature sample): the one-to-one assignment of classes to columns that agrees with the
    most real images (Hungarian algorithm on the class x top-1 column counts). With a few
    real images per class this is the label map itself, since the network is right on ~78 % of
    them; the accuracy of the mapped head on those images is reported as its ceiling."""

    def __init__(self, columns: torch.Tensor):
        self.columns = columns

    @classmethod
    def fit(cls, reference: FIDStats, fc_weight: torch.Tensor, n_classes: int
            ) -> tuple["InceptionHead", tuple[float, list[Optional[float]]]]:
        """(head, its ceiling) from reference.features (M, 2048) and .labels (M,), fc_weight (1008, 2048)."""
        from scipy.optimize import linear_sum_assignment
        logits = torch.from_numpy(reference.features).float() @ fc_weight.float().cpu().T  # as InceptionFeatures
        labels = torch.from_numpy(reference.labels).long()
        counts = np.zeros((n_classes, logits.shape[1]))
        np.add.at(counts, (labels.numpy(), logits.argmax(1).numpy()), 1)
        rows, cols = linear_sum_assignment(counts, maximize=True)
        head = cls(torch.from_numpy(cols[np.argsort(rows)]).long())
        ceiling = ClassAccuracy(n_classes)
        ceiling.update(head.predict(logits) == labels, labels)
        return head, ceiling.result()

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (B, 1008) -> predicted classes (B,)."""
        return logits[:, self.columns.to(logits.device)].argmax(1)


def imagenet_classes(class_names: list[str]) -> bool:
    """Whether the classes are ImageNet's, named by WordNet id (as `hamgan prepare` stores them)."""
    return bool(class_names) and all(IMAGENET_ID.fullmatch(n) for n in class_names)


class ConditionalMetrics:
    """Accuracy of labelled images under every available classifier, streamed per batch.

    `classifiers`: a `classifier.Classifiers` (or None); `head`: an `InceptionHead` with its
    ceiling (or None). `update(images uint8 (B, 3, R, R), classes (B,), logits (B, 1008))`."""

    def __init__(self, n_classes: int, classifiers=None, head=None, device="cpu"):
        self.models = dict(classifiers.models) if classifiers is not None else {}
        self.ceilings = dict(classifiers.ceilings) if classifiers is not None else {}
        self.head = None
        if head is not None:
            self.head, self.ceilings["inception"] = head
        names = list(self.models) + (["inception"] if self.head is not None else [])
        self.acc = {name: ClassAccuracy(n_classes, device) for name in names}

    def __bool__(self) -> bool:
        return bool(self.acc)

    def update(self, images: torch.Tensor, classes: torch.Tensor, logits: Optional[torch.Tensor] = None) -> None:
        for name, model in self.models.items():
            target = model.targets[classes.to(model.targets.device)]
            self.acc[name].update(model.predict(images) == target, classes)
        if self.head is not None:
            self.acc["inception"].update(self.head.predict(logits) == classes.to(logits.device), classes)

    def all_reduce(self) -> None:
        for acc in self.acc.values():
            acc.all_reduce()

    def result(self) -> dict:
        """{acc_<name>, acc_<name>_per_class, acc_<name>_ceiling, acc_<name>_ceiling_per_class}
        for each classifier, and class_counts (samples per class)."""
        out = {}
        for name, acc in self.acc.items():
            out[f"acc_{name}"], out[f"acc_{name}_per_class"] = acc.result()
            out[f"acc_{name}_ceiling"], out[f"acc_{name}_ceiling_per_class"] = self.ceilings[name]
        if self.acc:
            out["class_counts"] = [int(t) for t in next(iter(self.acc.values())).total.tolist()]
        return out


def intra_class_metrics(sample: FIDStats, reference: FIDStats, n_classes: int, notes: list,
                        min_count: int = MIN_INTRA, device="cpu") -> dict:
    """Intra-class FID and KID (means over classes, and per class) between the labelled feature
    samples of `sample` and `reference`; {} with a note when a class has too few samples."""
    from .kid import kernel_inception_distance
    counts = [(int((sample.labels == c).sum()), int((reference.labels == c).sum())) for c in range(n_classes)]
    fewest = min(min(pair) for pair in counts)
    if fewest < min_count:
        notes.append(f"intra-class FID/KID skipped: a class has only {fewest} samples on one side "
                     f"(need {min_count} generated and real per class; raise the sample count)")
        return {}
    fids, kids = [], []
    for c in range(n_classes):
        fake, real = sample.features[sample.labels == c], reference.features[reference.labels == c]
        fids.append(frechet_distance(fake.mean(0), np.cov(fake, rowvar=False), real.mean(0), np.cov(real, rowvar=False)))
        kids.append(kernel_inception_distance(real, fake, num_subsets=10, device=device)[0])
    fewest_fake = min(f for f, _ in counts)
    notes.append(f"intra-class FID from {fewest_fake}+ samples per class is biased upwards; compare only at equal "
                 "sample counts (intra-class KID is unbiased)")
    return {"intra_fid": float(np.mean(fids)), "intra_fid_per_class": fids,
            "intra_kid": float(np.mean(kids)), "intra_kid_per_class": kids, "intra_min_count": fewest}
