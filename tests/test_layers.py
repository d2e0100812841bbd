"""Priors, micro-tube box coding, matching, loss and post-processing, with hand-computed answers."""
import math

import pytest
import torch

from layers import MultiBoxLoss, decode, detect, encode, match, pad_targets, prior_boxes, tube_iou
from layers.box_coding import point_form


def cxcywh(x1, y1, x2, y2):
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


def test_prior_count_and_hand_values():
    p = prior_boxes()
    assert p.shape == (8732, 4)
    assert 38 * 38 * 4 + 19 * 19 * 6 + 10 * 10 * 6 + 5 * 5 * 6 + 3 * 3 * 4 + 4 == 8732
    c = 0.5 / (300 / 8)
    expected_first = [[c, c, 0.1, 0.1], [c, c, math.sqrt(0.1 * 0.2), math.sqrt(0.1 * 0.2)],
                      [c, c, 0.1 * math.sqrt(2), 0.1 / math.sqrt(2)], [c, c, 0.1 / math.sqrt(2), 0.1 * math.sqrt(2)]]
    assert torch.allclose(p[:4], torch.tensor(expected_first), atol=1e-7)
    # second cell of the 38x38 map: next column (j = 1), same row
    assert torch.allclose(p[4, :2], torch.tensor([1.5 / 37.5, c]))
    # 19x19 map starts after 5776 priors; 6 per cell
    assert torch.allclose(p[5776], torch.tensor([0.5 / (300 / 16), 0.5 / (300 / 16), 0.2, 0.2]))
    # last map 1x1: s = 264/300; aspect 2 makes w = 0.88*sqrt(2) > 1, clipped to 1
    s = 264 / 300
    expected_last = [[0.5, 0.5, s, s], [0.5, 0.5, math.sqrt(s * 315 / 300), math.sqrt(s * 315 / 300)],
                     [0.5, 0.5, 1.0, s / math.sqrt(2)], [0.5, 0.5, s / math.sqrt(2), 1.0]]
    assert torch.allclose(p[-4:], torch.tensor(expected_last), atol=1e-6)
    assert p.min() >= 0 and p.max() <= 1


def test_encode_hand_value_and_round_trip():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    box = torch.tensor([[[0.4, 0.45, 0.6, 0.65], [0.3, 0.3, 0.5, 0.7]]])  # [A=1, T=2, 4]
    code = encode(box, priors)
    # frame 0: centre (0.5, 0.55) -> (0, 0.05 / (0.1*0.2)); wh equal to the prior's -> 0
    assert torch.allclose(code[0, 0], torch.tensor([0.0, 2.5, 0.0, 0.0]), atol=1e-6)
    # frame 1: centre (0.4, 0.5), wh (0.2, 0.4) -> (-5, 0, 0, log(2)/0.2)
    assert torch.allclose(code[0, 1], torch.tensor([-5.0, 0.0, 0.0, math.log(2) / 0.2]), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    pri = prior_boxes()
    xy = torch.rand(3, pri.shape[0], 3, 2, generator=g) * 0.5
    boxes = torch.cat([xy, xy + 0.05 + torch.rand(3, pri.shape[0], 3, 2, generator=g) * 0.4], -1).double()
    assert torch.allclose(decode(encode(boxes, pri.double()), pri.double()), boxes, atol=1e-12)


PRIORS4 = torch.tensor([cxcywh(0, 0, 0.5, 0.5), cxcywh(0.5, 0.5, 1, 1), cxcywh(0, 0, 1, 1), cxcywh(0.25, 0, 0.75, 0.5)])


def test_tube_iou_averages_frames():
    tube = torch.tensor([[[0, 0, 0.5, 0.5], [0.25, 0, 0.75, 0.5]]])  # [N=1, T=2, 4]
    iou = tube_iou(tube, point_form(PRIORS4))
    # prior 0: frame IoUs 1 and 1/3; prior 2: 1/4 and 1/4; prior 3: 1/3 and 1
    assert torch.allclose(iou, torch.tensor([[2 / 3, 0.0, 0.25, 2 / 3]]))


def test_match_threshold_best_prior_and_later_duplicate_wins():
    tubes = [
        {"boxes": torch.tensor([[[0, 0, 0.5, 0.5], [0.25, 0, 0.75, 0.5]],
                                [[0.6, 0.6, 0.7, 0.7], [0.6, 0.6, 0.7, 0.7]]]),
         "labels": torch.tensor([1, 2])},
        # two identical ground truths share their best prior: the later one (label 3) keeps it
        {"boxes": torch.tensor([[[0.5, 0.5, 1, 1]] * 2, [[0.5, 0.5, 1, 1]] * 2]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.zeros(0, 2, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    boxes, labels, valid = pad_targets(tubes, 2)
    assert valid.tolist() == [[True, True], [True, True], [False, False]]
    lab, loc = match(boxes, labels, valid, PRIORS4)
    # sample 0: priors 0 and 3 average 2/3 >= 0.5 -> label 1; prior 1 overlaps the small box by
    # 0.04 only, but it is that box's best prior -> label 2; prior 2 averages 0.25 -> background
    assert lab.tolist() == [[1, 2, 0, 1], [0, 3, 0, 0], [0, 0, 0, 0]]
    assert torch.allclose(loc[0, 1], encode(boxes[0, 1].unsqueeze(0), PRIORS4[1:2])[0])
    assert torch.allclose(loc[0, 0, 0], torch.zeros(4), atol=1e-6)  # frame 0 equals prior 0
    assert torch.isfinite(loc).all()


def test_loss_hand_computed():
    # 6 priors, one ground truth equal to prior 0 in both frames -> 1 positive, 3 hard negatives
    priors = torch.tensor([cxcywh(0, 0, 0.5, 0.5)] + [cxcywh(0.6 + 0.05 * i, 0.6, 0.65 + 0.05 * i, 0.7) for i in range(5)])
    targets = [{"boxes": torch.tensor([[[0, 0, 0.5, 0.5]] * 2]), "labels": torch.tensor([2])}]
    conf = torch.zeros(1, 6, 3)
    conf[0, 0] = torch.tensor([0.0, 0.0, 1.0])  # positive, true class 2
    bg_logits = [2.0, -1.0, 0.5, 3.0, 1.0]  # negatives; larger background logit = smaller loss
    for i, v in enumerate(bg_logits):
        conf[0, i + 1, 0] = v
    loc = torch.zeros(1, 6, 8)
    loc[0, 0] = torch.tensor([0.5, 0, 0, 0, 2.0, 0, 0, 0])  # targets are 0: smooth-L1 0.125 + 1.5
    loss_l, loss_c = MultiBoxLoss(priors)(loc, conf, targets)
    assert loss_l.item() == pytest.approx(0.125 + 1.5)

    def ce(logits, k):
        return math.log(sum(math.exp(v) for v in logits)) - logits[k]

    # hard negatives: the 3 with the smallest background logits (-1.0, 0.5, 1.0)
    expected = ce([0.0, 0.0, 1.0], 2) + sum(ce([v, 0.0, 0.0], 0) for v in (-1.0, 0.5, 1.0))
    assert loss_c.item() == pytest.approx(expected, rel=1e-6)


def test_loss_without_positives_is_zero_not_nan():
    priors = PRIORS4
    conf = torch.randn(1, 4, 3, requires_grad=True)
    loc = torch.randn(1, 4, 8, requires_grad=True)
    loss_l, loss_c = MultiBoxLoss(priors)(loc, conf, [{"boxes": torch.zeros(0, 2, 4), "labels": torch.zeros(0, dtype=torch.long)}])
    assert loss_l.item() == 0 and loss_c.item() == 0


def test_loss_rejects_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        MultiBoxLoss(PRIORS4)(torch.zeros(1, 4, 8), torch.zeros(1, 4, 3),
                              [{"boxes": torch.tensor([[[0, 0, 0.5, 0.5]] * 2]), "labels": torch.tensor([0])}])


def test_detect_nms_on_first_frame_per_class_top_k_and_clip():
    b = [[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.6, 0.6, 1.2, 1.0], [0.1, 0.1, 0.5, 0.5]]
    priors = torch.tensor([cxcywh(*x) for x in b])
    loc = torch.zeros(1, 4, 8)
    # frame 1 of prior 1 moves far away: NMS still uses frame 0, so prior 1 is suppressed by prior 0
    loc[0, 1, 4] = 20.0
    probs = torch.tensor([[0.05, 0.9, 0.05], [0.1, 0.8, 0.1], [0.3, 0.69, 0.01], [0.005, 0.005, 0.99]])
    conf = probs.log().unsqueeze(0)
    (d,) = detect(loc, conf, priors, conf_thresh=0.05, nms_thresh=0.45, top_k=50)
    # class 1: prior 0 (0.9) kept, prior 1 (0.8) suppressed, prior 2 (0.69) kept; class 2: prior 3
    # (0.99) kept, prior 1 (0.1) suppressed by it, prior 0 (0.05) not above conf_thresh
    assert d["labels"].tolist() == [2, 1, 1]
    assert torch.allclose(d["scores"], torch.tensor([0.99, 0.9, 0.69]))
    assert d["boxes"].shape == (3, 2, 4)
    assert torch.allclose(d["boxes"][2, 0], torch.tensor([0.6, 0.6, 1.0, 1.0]))  # clipped after NMS
    assert torch.allclose(d["class_scores"], probs[[3, 0, 2]], atol=1e-6)
    (d1,) = detect(loc, conf, priors, conf_thresh=0.05, nms_thresh=0.45, top_k=1)
    assert sorted(d1["scores"].tolist()) == pytest.approx([0.9, 0.99])
