"""Metrics against values computed by hand (Top-1, Top-5, confusion matrix, MCA over the classes present)."""

from __future__ import annotations

import math

import pytest
import torch

from taghead.engine.metrics import (
    ClassificationMeter,
    confusion_matrix,
    mean_class_accuracy,
    per_class_accuracy,
    topk_accuracy,
)

# 6 clips, 4 classes; class 3 has no clip. Scores chosen so the rankings are unambiguous.
LOGITS = torch.tensor([
    [5.0, 1.0, 0.0, 2.0],   # true 0, ranking 0 3 1 2  -> top1 hit
    [0.0, 3.0, 4.0, 1.0],   # true 0, ranking 2 1 3 0  -> top1 miss, top3 miss (0 is last)
    [1.0, 6.0, 2.0, 0.0],   # true 1, ranking 1 2 0 3  -> hit
    [4.0, 3.0, 0.0, 1.0],   # true 1, ranking 0 1 3 2  -> miss, top2 hit
    [0.0, 1.0, 3.0, 2.0],   # true 2, ranking 2 3 1 0  -> hit
    [2.0, 0.0, 1.0, 3.0],   # true 2, ranking 3 0 2 1  -> miss, top3 hit
])
TARGETS = torch.tensor([0, 0, 1, 1, 2, 2])


def test_confusion_matrix_by_hand() -> None:
    expected = torch.tensor([
        [1, 0, 1, 0],   # class 0: one right, one predicted as 2
        [1, 1, 0, 0],   # class 1: one right, one predicted as 0
        [0, 0, 1, 1],   # class 2: one right, one predicted as 3
        [0, 0, 0, 0],   # class 3: absent
    ])
    assert torch.equal(confusion_matrix(LOGITS.argmax(1), TARGETS, 4), expected)


def test_topk_by_hand() -> None:
    assert topk_accuracy(LOGITS, TARGETS, 1) == pytest.approx(3 / 6)
    assert topk_accuracy(LOGITS, TARGETS, 2) == pytest.approx(4 / 6)   # + clip 3
    assert topk_accuracy(LOGITS, TARGETS, 3) == pytest.approx(5 / 6)   # + clip 5; clip 1 needs all 4
    assert topk_accuracy(LOGITS, TARGETS, 4) == pytest.approx(1.0)


def test_top5_with_fewer_than_5_classes_is_exactly_one() -> None:
    # With k >= number of classes every class is in the top k: the value is 1, not an error.
    assert topk_accuracy(LOGITS, TARGETS, 5) == 1.0
    three = torch.tensor([[0.1, 0.2, 0.7], [0.9, 0.05, 0.05]])
    assert topk_accuracy(three, torch.tensor([0, 2]), 5) == 1.0


def test_mca_leaves_absent_classes_out() -> None:
    cm = confusion_matrix(LOGITS.argmax(1), TARGETS, 4)
    per_class = per_class_accuracy(cm)
    assert per_class[:3].tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert math.isnan(float(per_class[3]))
    assert mean_class_accuracy(cm) == pytest.approx(0.5)  # not (0.5 * 3 + 0) / 4


def test_mca_differs_from_top1_on_imbalanced_split() -> None:
    # class 0: 4 clips, 3 right (0.75); class 1: 1 clip, wrong (0.0); class 2 absent.
    preds = torch.tensor([0, 0, 0, 1, 0])
    targets = torch.tensor([0, 0, 0, 0, 1])
    cm = confusion_matrix(preds, targets, 3)
    assert mean_class_accuracy(cm) == pytest.approx((0.75 + 0.0) / 2)
    assert float(cm.trace()) / 5 == pytest.approx(3 / 5)


def test_meter_accumulates_and_combines_by_summing() -> None:
    meter = ClassificationMeter(4)
    meter.update(LOGITS[:4], TARGETS[:4], loss=2.0)
    meter.update(LOGITS[4:], TARGETS[4:], loss=1.0)
    out = meter.compute()
    assert out["count"] == 6
    assert out["top1"] == pytest.approx(0.5)
    assert out["top5"] == 1.0
    assert out["mca"] == pytest.approx(0.5)
    assert out["loss"] == pytest.approx((2.0 * 4 + 1.0 * 2) / 6)

    # Two "processes" with half the data each, summed through state tensors: the same result.
    a, b = ClassificationMeter(4), ClassificationMeter(4)
    a.update(LOGITS[::2], TARGETS[::2], loss=1.5)
    b.update(LOGITS[1::2], TARGETS[1::2], loss=0.5)
    merged = ClassificationMeter(4)
    merged.load_state_tensor(a.state_tensor() + b.state_tensor())
    assert torch.equal(merged.confusion, meter.confusion)
    assert merged.compute()["top1"] == out["top1"] and merged.compute()["mca"] == out["mca"]
    assert merged.compute()["loss"] == pytest.approx(1.0)


def test_empty_meter_gives_nan() -> None:
    out = ClassificationMeter(3).compute()
    assert out["count"] == 0 and math.isnan(out["top1"]) and math.isnan(out["mca"])


@pytest.mark.parametrize("logits, targets, error", [
    (torch.zeros(3), torch.zeros(3, dtype=torch.long), ValueError),               # 1-D logits
    (torch.zeros(3, 4), torch.zeros(2, dtype=torch.long), ValueError),            # length mismatch
    (torch.zeros(3, 4), torch.tensor([0, 1, 4]), ValueError),                     # label out of range
    (torch.zeros(3, 4), torch.zeros(3), TypeError),                               # float labels
])
def test_bad_input_is_a_clear_error(logits, targets, error) -> None:
    with pytest.raises(error):
        topk_accuracy(logits, targets, 1)


def test_meter_rejects_wrong_class_count() -> None:
    with pytest.raises(ValueError, match="classes"):
        ClassificationMeter(3).update(LOGITS, TARGETS)
