"""The sequence model: shapes, padding invariance, empty histories, growth."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch

from learner.features import HistoryBatch, encode_histories
from learner.model import (
    ModelConfig,
    PushLearning,
    SequenceRecommender,
    model_config_from_dict,
    pad_optimizer_state,
)
from learner.vocab import Vocabularies, Vocabulary
from recoil.core.records import HistoryItem

torch.set_num_threads(1)

VOCABS = Vocabularies(Vocabulary([f"i{n}" for n in range(10)]), Vocabulary(["c0", "c1"]))
HISTORIES = [
    [HistoryItem(f"i{n}", f"c{n % 2}", None, n == 3, n % 6, n % 8, 0.0) for n in range(5)],
    [HistoryItem("i7", "c1", None, False, 5, 0, 0.0)],
    [],
]


def model(encoder: str, **kw: object) -> SequenceRecommender:
    torch.manual_seed(0)
    config = ModelConfig(num_items=12, num_creators=4, embedding_dim=8, hidden_dim=16,
                         encoder=encoder, max_len=8, dropout=0.0, **kw)  # type: ignore[arg-type]  # fmt: skip
    return SequenceRecommender(config).eval()


@pytest.mark.parametrize("encoder", ["gru", "sasrec"])
def test_shapes_and_padding_invariance(encoder: str) -> None:
    m = model(encoder)
    short = encode_histories(HISTORIES, VOCABS, 5, "feature_only")
    long = encode_histories(HISTORIES, VOCABS, 8, "feature_only")
    with torch.no_grad():
        s_short, s_long = m.user_state(short), m.user_state(long)
        assert s_short.shape == (3, 8)
        assert m.item_embeddings().shape == (12, 8)
        assert m.scores(long).shape == (3, 10)
        # left-aligned + causal: padding after the last item never changes the state
        assert torch.allclose(s_short, s_long, atol=1e-6)
        # also inside the encoder itself (user_state trims the common padding first)
        raw_long = m.encoder(m.embed(long), long.mask)
        raw_short = m.encoder(m.embed(short), short.mask)
        assert torch.allclose(raw_short, raw_long, atol=1e-6)
        # the empty history gets the learned empty state, whatever its padding
        empty = m.to_state(m.encoder.empty)
        assert torch.allclose(s_long[2], empty, atol=1e-6)
        # the newest item matters
        other = encode_histories([HISTORIES[0][:4]], VOCABS, 8, "feature_only")
        assert not torch.allclose(m.user_state(other)[0], s_long[0])


def test_embed_is_the_sum_of_the_five_feature_rows() -> None:
    # embed() reads the flag, dwell and gap rows through one summed table: every
    # (flag, dwell, gap) combination must give the same input as the five tables summed.
    m = model("gru")
    for table in (m.dislike_input, m.dwell_input, m.gap_input):
        torch.nn.init.normal_(table.weight)  # distinct rows, so a wrong index shows
    combos = [(f, d, g) for f in (False, True) for d in range(6) for g in range(8)]  # all 96
    item = [
        HistoryItem(f"i{n % 10}", f"c{n % 2}", None, flag, dwell, gap, 0.0)
        for n, (flag, dwell, gap) in enumerate(combos)
    ]
    histories = [item[start : start + 8] for start in range(0, len(item), 8)]
    batch = encode_histories(histories, VOCABS, 8, "feature_only")
    explicit = (
        m.item_input(batch.item.long())
        + m.creator_input(batch.creator.long())
        + m.dislike_input(batch.disliked.long())
        + m.dwell_input(batch.dwell.long())
        + m.gap_input(batch.gap.long())
    )
    with torch.no_grad():
        assert torch.allclose(m.embed(batch), m.input_norm(explicit), atol=1e-6)


def test_dislike_flag_changes_the_state_only_when_visible() -> None:
    m = model("gru")
    with torch.no_grad():
        states = {
            arm: m.user_state(encode_histories(HISTORIES[:1], VOCABS, 8, arm))
            for arm in ("no_signal", "feature_only")
        }
    assert not torch.allclose(states["no_signal"], states["feature_only"])


def test_a_flag_started_at_std_0_means_nothing_until_trained() -> None:
    # The live learner's start (dislike_flag_init_std=0): a flagged history reads as the
    # same history unflagged, so only the push tells the probe's two branches apart. At
    # the default N(0, 1) an untrained flag already moves the state.
    kw: dict[str, object] = {"flagged_input": "embed", "dislike_push": False}
    default, zero = model("gru", **kw), model("gru", dislike_flag_init_std=0.0, **kw)
    unflagged = [dataclasses.replace(h, disliked=False) for h in HISTORIES[0]]
    flagged, plain = (
        encode_histories([h], VOCABS, 8, "feature_and_labels") for h in (HISTORIES[0], unflagged)
    )
    with torch.no_grad():
        assert torch.equal(zero.user_state(flagged), zero.user_state(plain))
        assert not torch.allclose(default.user_state(flagged), default.user_state(plain))
    # the rows are scaled, not drawn again: every other table starts as before
    assert torch.equal(zero.item_input.weight, default.item_input.weight)
    assert torch.equal(zero.dislike_input.weight, torch.zeros_like(zero.dislike_input.weight))
    # and the flag still learns: a loss on the flagged history reaches its row
    zero.train()
    zero.scores(flagged)[0, 4].backward()
    grad = zero.dislike_input.weight.grad
    assert grad is not None and grad[1].abs().sum() > 0


def test_tied_embeddings_share_the_input_table() -> None:
    m = model("gru", tie_embeddings=True, creator_output=False)
    assert m.item_output is None and m.item_embeddings() is m.item_input.weight
    untied = model("gru", creator_output=False)
    assert untied.item_output is not None
    count = sum(p.numel() for p in m.parameters())
    assert sum(p.numel() for p in untied.parameters()) - count == 12 * 8


def test_bad_config_says_what_to_fix() -> None:
    with pytest.raises(ValueError, match="encoder must be"):
        ModelConfig(encoder="lstm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="embedding_dim must be >= 1"):
        ModelConfig(embedding_dim=0)
    with pytest.raises(ValueError, match="dislike_flag_init_std must be a finite number >= 0"):
        ModelConfig(dislike_flag_init_std=-0.1)
    # inf passed a `>= 0` check, and NaN slipped through `<`-style ones: both fail now
    for name, value in (("dislike_flag_init_std", math.inf), ("dislike_push_scale", math.nan),
                        ("dislike_push_prior", math.inf), ("init_std", math.nan),
                        ("dislike_push_init", math.nan)):  # fmt: skip
        changes: dict[str, Any] = {name: value}
        with pytest.raises(ValueError, match=f"{name} must be"):
            ModelConfig(**changes)
    with pytest.raises(ValueError, match="divisible"):
        SequenceRecommender(ModelConfig(encoder="sasrec", embedding_dim=7, num_heads=2))


@pytest.mark.parametrize("tie", [False, True])
def test_grow_items_keeps_trained_rows_and_optimizer_state(tie: bool) -> None:
    m = model("gru", tie_embeddings=tie).train()
    opt = torch.optim.AdamW(m.parameters(), lr=0.01)
    batch = encode_histories(HISTORIES, VOCABS, 8, "feature_only")
    m.scores(batch).logsumexp(1).sum().backward()
    opt.step()
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    table = m.item_input.weight
    moments = opt.state[table]["exp_avg"].clone()
    assert m.grow_items(20) and not m.grow_items(20) and not m.grow_items(15)
    pad_optimizer_state(opt)
    assert m.item_input.weight is table  # same Parameter: the optimizer still holds it
    assert m.num_items == 20 and m.item_embeddings().shape == (20, 8)
    assert m.current_config() == dataclasses.replace(m.config, num_items=20)
    for name, param in m.named_parameters():
        rows = before[name].shape[0]
        assert torch.equal(param[:rows], before[name]), name
    assert torch.all(m.item_input.weight[0] == 0)  # padding row stays zero
    state = opt.state[table]["exp_avg"]
    assert state.shape == (20, 8)
    assert torch.equal(state[:12], moments) and torch.all(state[12:] == 0)
    # training continues with the grown tables
    opt.zero_grad()
    m.scores(batch).logsumexp(1).sum().backward()
    opt.step()
    assert m.grow_creators(6) and m.num_creators == 6


def test_history_batch_select_and_to() -> None:
    batch = encode_histories(HISTORIES, VOCABS, 4, "no_signal")
    picked = batch.select(torch.tensor([2, 0]))
    assert isinstance(picked, HistoryBatch)
    assert picked.lengths.tolist() == [0, 4]
    assert picked.to("cpu").item.tolist() == picked.item.tolist()


def test_item_embedding_adds_its_creators_row_once_the_creator_is_known() -> None:
    m = model("gru")
    assert m.item_output is not None and m.creator_output is not None
    own = m.item_output.weight.detach().clone()
    with torch.no_grad():  # nothing observed yet: every item is its own row
        assert torch.equal(m.item_embeddings(), own)
    m.observe_creators(torch.tensor([2, 3, 0, 4]), torch.tensor([3, 3, 2, 1]))
    creator = m.creator_output.weight.detach()
    with torch.no_grad():
        v = m.item_embeddings()
    assert torch.equal(v[2], own[2] + creator[3]) and torch.equal(v[3], own[3] + creator[3])
    # padding rows (item 0) and the unknown creator (1) are never recorded
    assert m.item_creator.tolist()[:5] == [0, 0, 3, 3, 0]
    assert torch.equal(v[4], own[4])


def test_a_not_to_recommend_step_on_one_item_lowers_its_creators_other_items() -> None:
    from learner.loss import combined_loss

    m = model("gru")
    m.observe_creators(torch.tensor([2, 3, 4]), torch.tensor([2, 2, 3]))  # 2, 3 share c2
    batch = encode_histories(HISTORIES[:1], VOCABS, 8, "feature_and_labels")
    optimizer = torch.optim.SGD(m.parameters(), lr=0.5)
    with torch.no_grad():
        before = m.scores(batch)[0]
    for _ in range(3):
        logits = m.scores(batch)
        terms = combined_loss(logits, torch.tensor([0]), torch.ones(1), torch.tensor([True]))
        optimizer.zero_grad()
        terms.total.backward()
        optimizer.step()
    with torch.no_grad():
        after = m.scores(batch)[0]
    drop = before - after  # column j is item row j + 2
    # the labelled item (row 2) falls, its creator-mate (row 3) falls with it, through the
    # shared creator row, more than the item of another creator (row 4)
    assert drop[0] > 0 and drop[1] > 0 and drop[1] > drop[2]


def test_dislike_push_starts_silent_and_pushes_away_from_a_disliked_items_creator() -> None:
    plain = model("gru", dislike_push=False)
    # additive: a fixed vector, whatever the state's pull (the projection form has its
    # own test below)
    m = model("gru", dislike_push=True, dislike_push_init=0.0, dislike_push_form="additive")
    assert m.dislike_push is not None
    m.load_state_dict(plain.state_dict(), strict=False)  # same weights, path still at zero
    batch = encode_histories(HISTORIES[:1], VOCABS, 8, "feature_only")
    with torch.no_grad():
        assert torch.equal(m.user_state(batch), plain.user_state(batch))
    # the newest item (i4, creator c0) with a dislike: give its slot a negative weight
    disliked = [*HISTORIES[0][:4], dataclasses.replace(HISTORIES[0][4], disliked=True)]
    batch = encode_histories([disliked], VOCABS, 8, "feature_only")
    rows = torch.arange(2, 12)
    m.observe_creators(rows, 2 + rows % 2)  # i{n} is row n + 2, creator c{n % 2} row 2 + n % 2
    with torch.no_grad():
        before = m.scores(batch)[0]
        m.dislike_push.weight[0] = -1.0  # age 0: the newest item
        after = m.scores(batch)[0]
    drop = before - after  # column n is item i{n}
    same_creator = drop[[0, 2, 6, 8]]  # creator c0, like i4
    other_creator = drop[[1, 3, 5, 7, 9]]
    assert drop[4] > 0 and same_creator.mean() > other_creator.mean()


def test_the_push_only_pushes_away_and_can_start_pushing() -> None:
    # a > 0 would pull the state towards a disliked item; the push clamps it to 0, so a
    # positive a scores as no push at all (the heuristic), and a negative a lowers the
    # disliked item's own score.
    disliked = [*HISTORIES[0][:4], dataclasses.replace(HISTORIES[0][4], disliked=True)]
    batch = encode_histories([disliked], VOCABS, 8, "feature_only")
    # scale 1: the stored weights are a itself (the scale has its own test below)
    away = {
        "dislike_push": True,
        "flagged_input": "drop",
        "dislike_push_away": True,
        "dislike_push_scale": 1.0,
        "dislike_push_form": "additive",  # a fixed vector: its sign shows in any state
    }
    silent = model("gru", dislike_push_init=0.0, **away)
    pulls = model("gru", dislike_push_init=0.7, **away)
    pulls.load_state_dict(silent.state_dict())
    assert pulls.dislike_push is not None
    pulls.dislike_push.weight.data.fill_(0.7)  # what a free push learned on KuaiRand's runs
    free = model(
        "gru",
        dislike_push=True,
        flagged_input="drop",
        dislike_push_away=False,
        dislike_map=False,
        dislike_push_scale=1.0,
        dislike_push_form="additive",
    )
    free.load_state_dict(pulls.state_dict(), strict=False)
    with torch.no_grad():
        assert torch.equal(pulls.scores(batch), silent.scores(batch))
        assert not torch.allclose(free.scores(batch), silent.scores(batch))
    pushes = model("gru", dislike_push_init=-0.5, **away)
    assert pushes.dislike_push is not None
    assert torch.equal(pushes.push_weights(), torch.full((8,), -0.5))
    pushes.load_state_dict(silent.state_dict())  # same tables, a back at 0
    with torch.no_grad():
        pushes.dislike_push.weight.fill_(-0.5)
        drop = silent.scores(batch)[0] - pushes.scores(batch)[0]  # column n is item i{n}
    assert drop[4] > 0  # i4, the disliked item, scores lower
    # and the clamp keeps a gradient at a = 0, so a push starting silent can still learn,
    # and above 0, so an age the data switched off can come back on
    start = model("gru", dislike_push_init=0.0, **away)
    start.scores(batch)[0, 4].backward()
    assert start.dislike_push is not None and start.dislike_push.weight.grad is not None
    assert start.dislike_push.weight.grad[0].item() != 0.0
    pulls.scores(batch)[0, 4].backward()
    assert pulls.dislike_push.weight.grad is not None
    # the newest (age 0) dislike is i4: raising a there would raise i4's score
    assert pulls.dislike_push.weight.grad[0].item() > 0.0


def test_the_push_scale_multiplies_a_and_its_speed() -> None:
    # a = scale x weight: the same start, and one Adam step moves a scale times as far
    # (Adam steps a weight by about lr whatever its gradient's size).
    disliked = [*HISTORIES[0][:4], dataclasses.replace(HISTORIES[0][4], disliked=True)]
    batch = encode_histories([disliked], VOCABS, 8, "feature_only")
    moved = {}
    for scale in (1.0, 10.0):
        torch.manual_seed(0)
        m = model(
            "gru", dislike_push_init=-0.3, dislike_push_scale=scale, dislike_push_form="additive"
        )
        assert torch.allclose(m.push_weights(), torch.full((8,), -0.3))
        assert m.dislike_push is not None
        optimizer = torch.optim.Adam(m.dislike_push.parameters(), lr=0.01)
        m.scores(batch)[0, 4].backward()  # the step lowers the disliked item's score
        optimizer.step()
        moved[scale] = float(m.push_weights()[0]) + 0.3
    assert moved[1.0] == pytest.approx(-0.01, rel=1e-3)  # a pushes harder
    assert moved[10.0] == pytest.approx(-0.1, rel=1e-3)
    with pytest.raises(ValueError, match="dislike_push_scale"):
        ModelConfig(num_items=12, num_creators=4, dislike_push_scale=0.0)


def test_a_saved_config_without_new_fields_loads_as_it_was_trained() -> None:
    # Snapshots and checkpoints written before a default changed must load with the
    # defaults of their day, not today's.
    old = {"num_items": 12, "num_creators": 4}
    config = model_config_from_dict(old)
    assert config.flagged_input == "embed" and config.dislike_push_scale == 1.0
    assert config.dislike_map and not config.dislike_push_away
    assert config.dislike_push_init == 0.0 and config.dislike_push_form == "additive"
    assert config.negative_label_learning == "all" and config.dislike_push_smooth == 0.0
    assert config.item_dislike_offset == 0.0 and SequenceRecommender(config).item_feedback is None
    today = ModelConfig(num_items=12, num_creators=4)
    assert model_config_from_dict(dataclasses.asdict(today)) == today


@pytest.mark.parametrize(("flagged_input", "rate_rows"), [("gated", 0), ("drop", 0), ("drop", 8)])
@pytest.mark.parametrize("encoder", ["gru", "sasrec"])
def test_the_learned_model_starts_as_exclude_heuristic(
    encoder: str, flagged_input: str, rate_rows: int
) -> None:
    # The heuristic is a special case of the learned model: with the gate shut, the
    # push silent (a = 0) and the dislike-rate rows at 0, the same weights score
    # exactly as exclude_heuristic.
    m = model(
        encoder, flagged_input=flagged_input, dislike_push=True, dislike_push_init=0.0,
        dislike_rate_rows=rate_rows,
    )  # fmt: skip
    flagged = (0, 3, 4)
    many = [
        [HistoryItem(f"i{n}", f"c{n % 2}", None, n in flagged, n % 6, n % 8, 0) for n in range(7)],
        [HistoryItem("i7", "c1", None, True, 5, 0, 0.0)],  # only a dislike: the empty state
        HISTORIES[1],
        # longer than max_len (8) with 5 flagged: the heuristic's window reaches back past
        # them to the 8 newest unflagged items, and so must the learned model's
        [HistoryItem(f"i{n % 10}", f"c{n % 2}", None, n % 3 == 0, n % 6, 0, 0) for n in range(14)],
    ]  # fmt: skip
    with torch.no_grad():
        heuristic = m.scores(encode_histories(many, VOCABS, 8, "exclude_heuristic"))
        for arm in ("feature_only", "feature_and_labels"):
            assert torch.allclose(m.scores(encode_histories(many, VOCABS, 8, arm)), heuristic)
        kept = m.scores(encode_histories(many, VOCABS, 8, "no_signal"))
        assert not torch.allclose(kept, heuristic)  # the dropped items did matter
        # "embed" reads them with the flag: a different model, not the heuristic
        embed = model(encoder, flagged_input="embed", dislike_push=True, dislike_push_init=0.0)
        flagged_scores = embed.scores(encode_histories(many, VOCABS, 8, "feature_only"))
        assert not torch.allclose(flagged_scores, heuristic)
        if m.flagged_gate is not None:
            # a fully open gate reads the flagged items exactly as "embed" does
            m.flagged_gate.fill_(1.0)
            opened = m.scores(encode_histories(many, VOCABS, 8, "feature_only"))
            assert torch.allclose(opened, flagged_scores, atol=1e-6)
    with pytest.raises(ValueError, match="flagged_input must be"):
        ModelConfig(flagged_input="ignore")  # type: ignore[arg-type]


def test_the_dislike_rate_row_grows_with_the_share_of_disliked_items() -> None:
    m = model("gru", dislike_rate_rows=8)
    shares = [(0, 10), (1, 50), (1, 10), (1, 4), (1, 2), (3, 4), (10, 10)]
    histories = [
        [HistoryItem(f"i{n % 10}", "c0", None, n < bad, 3, 0, 0.0) for n in range(size)]
        for bad, size in shares
    ]
    batch = encode_histories(histories, VOCABS, 50, "feature_only")
    rows = m._dislike_rate_row(batch).tolist()
    # none: row 0; then rows 1..7 by sqrt(share): 0.02 -> 1, 0.1 -> 3, 0.25 -> 4, ...
    assert rows == [0, 1, 3, 4, 5, 7, 7]
    # an arm that hides the flag reads row 0 whatever the history
    hidden = encode_histories(histories, VOCABS, 50, "no_signal")
    assert m._dislike_rate_row(hidden).tolist() == [0] * len(shares)
    # a trained row moves the state of exactly the histories that read it
    with torch.no_grad():
        before = m.user_state(batch)
        assert m.dislike_rate is not None
        m.dislike_rate.weight[3].fill_(1.0)
        moved = (m.user_state(batch) - before).abs().sum(1) > 0
    assert moved.tolist() == [row == 3 for row in rows]
    with pytest.raises(ValueError, match=r"dislike_rate_rows must be 0 or 2\.\.64"):
        ModelConfig(dislike_rate_rows=1)


@pytest.mark.parametrize(
    ("learning", "moved_by"),
    [
        ("all", {"positive", "not_to_recommend"}),
        ("negatives", {"not_to_recommend"}),
        ("positives", {"positive"}),
        ("none", set()),
    ],
)
def test_push_learning_says_which_loss_moves_the_push(
    learning: PushLearning, moved_by: set[str]
) -> None:
    from learner.features import ExampleTensors
    from learner.module import RecommenderModule

    torch.manual_seed(0)
    config = ModelConfig(
        num_items=12, num_creators=4, embedding_dim=8, hidden_dim=16, max_len=8,
        dropout=0.0, flagged_input="drop", dislike_push_learning=learning,
    )  # fmt: skip
    module = RecommenderModule.from_config(config)
    disliked = [*HISTORIES[0][:4], dataclasses.replace(HISTORIES[0][4], disliked=True)]
    history = encode_histories([disliked, disliked], VOCABS, 8, "feature_only")
    labels = VOCABS.items.lookup(["i4", "i5"])  # a positive row, then a not-to-recommend row
    batch = ExampleTensors(
        history, torch.as_tensor(labels), torch.ones(2), torch.tensor([False, True]),
        torch.arange(2), torch.zeros(2, dtype=torch.long),
    )  # fmt: skip
    assert module.model.dislike_push is not None
    push = module.model.dislike_push.weight
    for term in ("positive", "not_to_recommend"):
        push.grad = None
        module.zero_grad()
        getattr(module.loss_terms(batch, sampled=False), term).backward()
        moved = push.grad is not None and bool(push.grad.abs().sum() > 0)
        assert moved == (term in moved_by), term
    with pytest.raises(ValueError, match="dislike_push_learning"):
        ModelConfig(dislike_push_learning="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize("sampled", [False, True])
def test_negative_label_learning_state_holds_the_item_rows_for_negative_rows(
    sampled: bool,
) -> None:
    """With "state" the not-to-recommend term moves the encoder, never the output rows it
    scores; the loss's value and the positive term's gradients are those of "all"."""
    from learner.features import ExampleTensors
    from learner.module import RecommenderModule

    # no disliked item: the push, which reads its items' output rows, is not in play
    history = encode_histories([HISTORIES[0][:3]] * 3, VOCABS, 8, "feature_only")
    labels = VOCABS.items.lookup(["i4", "i5", "i6"])  # two positive rows, one negative
    batch = ExampleTensors(
        history, torch.as_tensor(labels), torch.ones(3), torch.tensor([False, True, False]),
        torch.arange(3), torch.zeros(3, dtype=torch.long),
    )  # fmt: skip
    grads: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    values: dict[str, list[float]] = {}
    for learning in ("all", "state"):
        torch.manual_seed(0)
        config = ModelConfig(
            num_items=12, num_creators=4, embedding_dim=8, hidden_dim=16, max_len=8,
            dropout=0.0, negative_label_learning=learning,
        )  # fmt: skip
        module = RecommenderModule.from_config(config, num_sampled=4)
        creators = VOCABS.creators.lookup(["c0", "c1", "c0"])
        module.model.observe_creators(torch.as_tensor(labels), torch.as_tensor(creators))
        grads[learning], values[learning] = {}, []
        for term in ("positive", "not_to_recommend"):
            module.zero_grad()
            module.sampler.manual_seed(1)
            terms = module.loss_terms(batch, sampled=sampled)
            values[learning] += [float(t.detach()) for t in terms]
            getattr(terms, term).backward()
            grads[learning][term] = {
                name: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                for name, p in module.model.named_parameters()
            }
    negative_state = grads["state"]["not_to_recommend"]
    for table in ("item_output.weight", "creator_output.weight"):
        assert not negative_state[table].any(), table
        assert grads["all"]["not_to_recommend"][table].any(), table
    assert negative_state["to_state.weight"].any()
    if not sampled:  # a sampled pass draws its candidates per part, so only full matches
        assert values["state"] == pytest.approx(values["all"])
        for name, grad in grads["all"]["positive"].items():
            torch.testing.assert_close(grads["state"]["positive"][name], grad, msg=name)
    with pytest.raises(ValueError, match="negative_label_learning"):
        ModelConfig(negative_label_learning="items")  # type: ignore[arg-type]


def test_negative_label_learning_push_moves_only_the_push_weights() -> None:
    from learner.features import ExampleTensors
    from learner.module import RecommenderModule

    torch.manual_seed(0)
    config = ModelConfig(
        num_items=12, num_creators=4, embedding_dim=8, hidden_dim=16, max_len=8,
        dropout=0.0, flagged_input="drop", negative_label_learning="push",
    )  # fmt: skip
    module = RecommenderModule.from_config(config)
    history = encode_histories([HISTORIES[0]] * 2, VOCABS, 8, "feature_only")  # i3 disliked
    labels = VOCABS.items.lookup(["i5", "i6"])  # a positive row, then a negative row
    batch = ExampleTensors(
        history, torch.as_tensor(labels), torch.ones(2), torch.tensor([False, True]),
        torch.arange(2), torch.zeros(2, dtype=torch.long),
    )  # fmt: skip
    moved = {}
    for term in ("positive", "not_to_recommend"):
        module.zero_grad()
        getattr(module.loss_terms(batch, sampled=False), term).backward()
        moved[term] = {
            name for name, p in module.model.named_parameters()
            if p.grad is not None and bool(p.grad.any())
        }  # fmt: skip
    assert {"dislike_push.weight", "to_state.weight", "item_output.weight"} <= moved["positive"]
    # the push's a, and the output rows it reads (the disliked i3's and its creator's)
    push_only = {"dislike_push.weight", "item_output.weight", "creator_output.weight"}
    assert moved["not_to_recommend"] == push_only
    assert module.model.item_output is not None
    grad = module.model.item_output.weight.grad
    assert grad is not None
    assert set(grad.abs().sum(1).nonzero().squeeze(1).tolist()) == set(VOCABS.items.lookup(["i3"]))


def test_the_push_prior_is_zero_at_its_centre_and_pulls_a_back_to_it() -> None:
    pushed = model(
        "gru",
        flagged_input="drop",
        dislike_push_init=-0.3,
        dislike_push_prior=0.5,
        dislike_push_smooth=0.0,
    )
    assert pushed.dislike_push is not None
    assert float(pushed.push_prior_penalty()) == pytest.approx(0.0)
    with torch.no_grad():
        pushed.dislike_push.weight[0] += 0.02  # a[0] = -0.3 + 10 * 0.02 = -0.1
    penalty = pushed.push_prior_penalty()
    assert float(penalty) == pytest.approx(0.5 * 0.2**2)
    penalty.backward()
    grad = pushed.dislike_push.weight.grad
    assert grad is not None and float(grad[0]) > 0  # descending it lowers a[0] to -0.3
    assert float(grad[1:].abs().max()) < 1e-5  # the other ages sit at the centre
    without = model("gru", flagged_input="drop", dislike_push_init=-0.3)
    assert float(without.push_prior_penalty()) == 0.0
    with pytest.raises(ValueError, match="dislike_push_prior"):
        ModelConfig(dislike_push_prior=-1.0)


def test_the_smoothing_prior_is_zero_for_one_weight_and_pulls_neighbouring_ages_together() -> None:
    pushed = model("gru", flagged_input="drop", dislike_push_init=-0.3, dislike_push_smooth=0.5)
    assert pushed.dislike_push is not None
    assert float(pushed.push_prior_penalty()) == pytest.approx(0.0)  # every age alike
    with torch.no_grad():
        pushed.dislike_push.weight[0] += 0.02  # a[0] = -0.1, its neighbour a[1] = -0.3
    penalty = pushed.push_prior_penalty()
    assert float(penalty) == pytest.approx(0.5 * 0.2**2)
    penalty.backward()
    grad = pushed.dislike_push.weight.grad
    assert grad is not None
    assert float(grad[0]) > 0 > float(grad[1])  # a[0] down, a[1] up: towards each other
    assert float(grad[2:].abs().max()) < 1e-5  # ages whose neighbours agree are left
    with pytest.raises(ValueError, match="dislike_push_smooth"):
        ModelConfig(dislike_push_smooth=-1.0)


def test_a_projection_push_of_minus_one_removes_the_states_pull_towards_the_dislike() -> None:
    # "projection": the push is a times the state's component along v_j. At a = -1 the
    # disliked item scores exactly 0 (no pull left), whatever the state's size; a state
    # already turned away from it is left as it is.
    disliked = [*HISTORIES[0][:4], dataclasses.replace(HISTORIES[0][4], disliked=True)]
    batch = encode_histories([disliked], VOCABS, 8, "feature_only")
    settings = {"flagged_input": "drop", "dislike_push_scale": 1.0, "dislike_push_init": 0.0}
    plain = model("gru", dislike_push_form="projection", **settings)
    pushed = model("gru", dislike_push_form="projection", **settings)
    assert pushed.dislike_push is not None and plain.dislike_push is not None
    rows = torch.arange(2, 12)  # i{n} is row n + 2, creator c{n % 2} row 2 + n % 2
    for model_ in (plain, pushed):  # so v_i4 in the scores is the row the push reads
        model_.observe_creators(rows, 2 + rows % 2)
    i4 = 4  # score column of item i4, the newest (disliked) item
    with torch.no_grad():
        pushed.dislike_push.weight[0] = -1.0
        pull = float(plain.scores(batch)[0, i4])
        if pull < 0:  # make the unpushed state point at i4, so there is a pull to remove
            for model_ in (plain, pushed):
                model_.item_output.weight[i4 + 2].neg_()  # type: ignore[union-attr]
            pull = float(plain.scores(batch)[0, i4])
        assert pull > 0
        assert float(pushed.scores(batch)[0, i4]) == pytest.approx(0.0, abs=1e-6)
        half = model("gru", dislike_push_form="projection", **settings)
        half.load_state_dict(pushed.state_dict())
        half.dislike_push.weight[0] = -0.5  # type: ignore[union-attr]
        assert float(half.scores(batch)[0, i4]) == pytest.approx(pull / 2, rel=1e-5)
        for model_ in (plain, pushed):  # now turned away from i4: nothing to remove
            model_.item_output.weight[i4 + 2].neg_()  # type: ignore[union-attr]
        assert torch.equal(pushed.scores(batch), plain.scores(batch))
    with pytest.raises(ValueError, match="dislike_push_form"):
        ModelConfig(dislike_push_form="multiply")  # type: ignore[arg-type]


def test_projected_dislikes_remove_what_is_left_of_the_pull_so_a_run_cannot_overshoot() -> None:
    # Two dislikes of items along the same direction, each with a = -0.5: applied one
    # after the other each removes half of what is left (a quarter stays); applied
    # together they would have removed it all. a = -1 never turns the state past 0.
    state = torch.tensor([[2.0, 1.0]])  # (B=1, D=2)
    rows = torch.tensor([[[1.0, 0.0], [2.0, 0.0]]])  # (1, T=2, D): v_0, v_1 = 2 v_0
    push = SequenceRecommender._projected_push(state, torch.tensor([[-0.5, -0.5]]), rows)
    assert torch.allclose(state + push, torch.tensor([[0.5, 1.0]]))  # pull 2 -> 0.5
    a = torch.tensor([[-1.0, -3.0]], requires_grad=True)  # the newest (slot 1) at -3
    push = SequenceRecommender._projected_push(state, a, rows)
    assert torch.allclose(state + push, torch.tensor([[0.0, 1.0]]))  # all of it, no more
    push[0, 0].backward()  # the clamp at -1 is straight through: a = -3 can come back
    assert a.grad is not None and float(a.grad[0, 1]) != 0.0
    away = torch.tensor([[-2.0, 1.0]])  # already turned away from v: left as it is
    push = SequenceRecommender._projected_push(away, torch.tensor([[-0.5, -0.5]]), rows)
    assert torch.equal(push, torch.zeros(1, 2))


def test_the_projected_push_over_flagged_slots_only_equals_the_loop_over_every_slot() -> None:
    # The push visits only each row's flagged slots (packed newest first, K of them)
    # instead of all T: an unflagged slot has a = 0 and adds exactly 0. Values and
    # gradients must be those of the loop over every slot, the form the recorded
    # experiment figures were trained with; rows with no flag, one and several.
    generator = torch.Generator().manual_seed(5)
    state = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    rows = torch.randn(6, 7, 4, generator=generator, dtype=torch.float64)
    flagged = torch.rand(6, 7, generator=generator) < 0.3
    flagged[0] = False
    flagged[1, :] = True
    a = (-torch.rand(6, 7, generator=generator, dtype=torch.float64) * 1.5).requires_grad_()
    outputs: list[list[torch.Tensor]] = []
    for flags in (flagged, None):  # None: every slot, newest first
        inputs = [x.detach().clone().requires_grad_() for x in (state, rows)]
        push = SequenceRecommender._projected_push(inputs[0], a * flagged, inputs[1], flags)
        (push * torch.arange(4.0, dtype=torch.float64)).sum().backward()
        grads = [x.grad for x in (*inputs, a)]
        assert all(g is not None for g in grads)
        outputs.append([push.detach(), *(g for g in grads if g is not None)])
        a.grad = None
    for fast, every in zip(outputs[0], outputs[1], strict=True):
        assert torch.equal(fast, every)
    assert not torch.equal(outputs[0][0], torch.zeros(6, 4, dtype=torch.float64))
    # a batch without any flag still reads a (gradient 0), as DDP needs
    push = SequenceRecommender._projected_push(
        state, a * False, rows, torch.zeros(6, 7, dtype=torch.bool)
    )
    push.sum().backward()
    assert torch.equal(push, torch.zeros_like(state))
    assert a.grad is not None and torch.equal(a.grad, torch.zeros_like(a))


def test_the_benchmarks_offer_every_value_of_the_model_settings_they_pass_on() -> None:
    """bench/learner_flags.py spells the choices out (no torch import there)."""
    import argparse
    import typing

    from bench.learner_flags import add_learner_arguments
    from learner.model import NegativeLearning, PushForm

    parser = argparse.ArgumentParser()
    add_learner_arguments(parser)
    choices = {a.dest: list(a.choices or ()) for a in parser._actions}
    assert choices["dislike_push_form"] == list(typing.get_args(PushForm))
    assert choices["negative_label_learning"] == list(typing.get_args(NegativeLearning))


def test_the_benchmarks_pass_their_model_flags_on_as_recoil_learn_reads_them() -> None:
    import argparse

    from bench.learner_flags import add_learner_arguments, model_flags, model_overrides
    from recoil.cli import build_parser

    parser = argparse.ArgumentParser()
    add_learner_arguments(parser)
    assert model_overrides(parser.parse_args([])) == {}
    given = ["--max-len=20", "--dislike-push-form=additive", "--negative-label-learning=push"]
    overrides = model_overrides(parser.parse_args(given))
    assert dataclasses.replace(ModelConfig(), **overrides).max_len == 20
    learn = build_parser().parse_args(["learn", "--store=s", *model_flags(overrides)])
    assert {name: getattr(learn, name) for name in overrides} == overrides
