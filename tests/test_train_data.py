"""Training data: the loss mask covers exactly the trained role's sampled ids, and per-turn credit lands on
the right tokens (a hand-made episode), across turns, with no token drift."""

import math

import pytest
import torch

from agents.hf import load_chat_model
from arena.play.episode import Episode, TurnRecord
from arena.train.data import collate, returns_to_go, role_sequences
from arena.train.metrics import episode_metrics
from arena.train.model import TokenStats, bc_loss, pg_loss


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_chat_model(tiny_model_dir)[1]


def _ids(tok, text, stop=True):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return ids + ([tok.eos_token_id] if stop else [])


def _hand_made_episode(tok):
    """Two roles, two turns each; player_0's second turn hit the length limit (no end token)."""
    a1, b1 = _ids(tok, "I suggest I take 1 book"), _ids(tok, "Deal?")
    a2, b2 = _ids(tok, "[propose] (1 book", stop=False), _ids(tok, "[propose] (0 books)")
    turns = [
        TurnRecord(0, "player_0", "seed", "Items: 1 book", tok.decode(a1[:-1]), True, rewards={}, token_ids=a1),
        TurnRecord(1, "player_1", "seed", "Partner: I suggest", tok.decode(b1[:-1]), True, token_ids=b1),
        TurnRecord(2, "player_0", "seed", "Partner: Deal?", tok.decode(a2), True,
                   rewards={"player_0": -0.5}, token_ids=a2),
        TurnRecord(3, "player_1", "seed", "Your partner has made a proposal.", tok.decode(b2[:-1]), True,
                   rewards={"player_0": 6.0, "player_1": 4.0}, token_ids=b2),
    ]
    episode = Episode("e1", "negotiation-v0", {}, 7, {"player_0": "seed", "player_1": "seed"},
                      {"player_0": "You negotiate.", "player_1": "You negotiate."}, turns=turns,
                      scores={"player_0": 6.0, "player_1": 4.0})
    episode.credit_rewards()
    return episode, {"player_0": [a1, a2], "player_1": [b1, b2]}


def test_spans_are_exactly_the_sampled_ids_and_credit_is_per_turn(tokenizer):
    episode, sampled = _hand_made_episode(tokenizer)
    seqs = {s.role: s for s in role_sequences(episode, ["player_0", "player_1"], tokenizer,
                                              [tokenizer.eos_token_id])}
    for role, seq in seqs.items():
        assert seq.exact
        assert [seq.ids[a:b] for a, b in seq.spans] == sampled[role]
    # player_0: -0.5 at its second turn, then its 6 points arrive on player_1's last move: credited to turn 2
    assert seqs["player_0"].rewards == [0.0, 5.5] and seqs["player_0"].returns == [5.5, 5.5]
    assert seqs["player_1"].rewards == [0.0, 4.0] and seqs["player_1"].returns == [4.0, 4.0]
    p0 = seqs["player_0"]
    cut_end = p0.spans[1][1]
    assert p0.ids[cut_end] == tokenizer.eos_token_id, "the cut turn is closed in context but not trained on"


def test_batch_mask_and_advantages_land_on_the_role_tokens_only(tokenizer):
    episode, sampled = _hand_made_episode(tokenizer)
    seqs = role_sequences(episode, ["player_0", "player_1"], tokenizer, [tokenizer.eos_token_id])
    for s in seqs:
        s.advantages = [1.0, -2.0]
    batch = collate(seqs, tokenizer.pad_token_id)
    for row, s in enumerate(seqs):
        predicted = batch.input_ids[row, 1:][batch.target[row, :-1]].tolist()
        assert predicted == [t for ids in sampled[s.role] for t in ids]
        first, second = s.spans
        assert (batch.advantage[row, first[0] - 1:first[1] - 1] == 1.0).all()
        assert (batch.advantage[row, second[0] - 1:second[1] - 1] == -2.0).all()
        outside = ~batch.target[row]
        assert (batch.advantage[row][outside] == 0).all() and (batch.turn[row][outside] == -1).all()


def test_losses_ignore_masked_positions_even_if_they_are_nan(tokenizer):
    episode, _ = _hand_made_episode(tokenizer)
    seqs = role_sequences(episode, ["player_0"], tokenizer, [tokenizer.eos_token_id])
    seqs[0].advantages = [1.0, 1.0]
    batch = collate(seqs, tokenizer.pad_token_id)
    mask = batch.target[:, :-1]
    logp = torch.full(mask.shape, -1.0, requires_grad=True)
    poisoned = torch.where(mask, logp, torch.full_like(logp, float("nan")))
    stats = TokenStats(poisoned, torch.zeros_like(logp), mask, ref_logp=torch.where(mask, logp.detach() - 0.1,
                                                                                      torch.nan))
    loss, metrics = pg_loss(stats, batch, beta=0.1)
    assert math.isfinite(float(loss)) and metrics["kl"] > 0
    loss.backward()
    assert torch.isfinite(logp.grad).all() and (logp.grad[~mask] == 0).all() and (logp.grad[mask] != 0).all()
    nll, _ = bc_loss(TokenStats(poisoned, torch.zeros_like(logp), mask))
    assert float(nll) == pytest.approx(1.0)


def test_returns_to_go():
    assert returns_to_go([1.0, 0.0, 2.0]) == [3.0, 2.0, 2.0]
    assert returns_to_go([1.0, 0.0, 2.0], gamma=0.5) == [1.5, 1.0, 2.0]


def test_text_only_turns_fall_back_to_the_tokenised_text(tokenizer):
    episode, _ = _hand_made_episode(tokenizer)
    for t in episode.turns:
        t.token_ids = None
    seq = role_sequences(episode, ["player_1"], tokenizer)[0]
    assert not seq.exact and len(seq.spans) == 2
    assert tokenizer.decode(seq.ids[seq.spans[0][0]:seq.spans[0][1]]) == "Deal?<|end|>"


def test_token_stats_on_the_trained_positions_only_equal_the_full_computation(tiny_model_dir, tokenizer):
    """Logits only where some row predicts a trained token: the same log-probs, entropies, KL and loss."""
    from agents.sampling import SamplingConfig
    from arena.train.model import TrainableModel

    model = TrainableModel(tiny_model_dir, "hf:tiny", SamplingConfig())
    episode, sampled = _hand_made_episode(tokenizer)
    seqs = role_sequences(episode, ["player_0", "player_1"], tokenizer, [tokenizer.eos_token_id])
    for s in seqs:
        s.advantages = [1.0, -2.0]
    batch = collate(seqs, tokenizer.pad_token_id)
    with torch.no_grad():  # nudge the policy away from its reference so that the KL is not zero
        next(iter(model.parameters())).add_(0.01)
    cut = model.token_stats(batch, with_reference=True)
    assert model._keep_keyword and cut.columns is not None
    assert len(cut.columns) < batch.target.shape[1] - 1, "prompt positions are left out"
    model._keep_keyword = None
    full = model.token_stats(batch, with_reference=True)
    assert full.columns is None
    mask = full.mask
    assert int(cut.mask.sum()) == int(mask.sum()) == sum(len(t) for ids in sampled.values() for t in ids)
    for name in ("logp", "entropy", "ref_logp"):
        assert getattr(cut, name)[cut.mask].tolist() == pytest.approx(getattr(full, name)[mask].tolist(), abs=1e-5)
    for loss_fn in (lambda st: pg_loss(st, batch, beta=0.1), bc_loss):
        (a, ma), (b, mb) = loss_fn(cut), loss_fn(full)
        assert float(a) == pytest.approx(float(b), abs=1e-5) and ma == pytest.approx(mb, abs=1e-5)


def test_truncated_importance_weights_use_the_samplers_log_probabilities(tokenizer):
    """With engine_is_cap, each token's term is weighted by min(exp(log p - log p_sampler), cap), held constant;
    a span without the sampler's numbers keeps weight 1, and NaN never reaches the loss."""
    episode, _ = _hand_made_episode(tokenizer)
    seq = role_sequences(episode, ["player_0"], tokenizer, [tokenizer.eos_token_id])[0]
    seq.advantages = [1.0, 1.0]
    (a0, b0), (a1, b1) = seq.spans
    seq.sampled_logprobs = [[-1.0] * (b0 - a0), None]
    batch = collate([seq], tokenizer.pad_token_id)
    assert (batch.sampled_logp[0, a0 - 1:b0 - 1] == -1.0).all() and batch.sampled_logp[0, a1 - 1:b1 - 1].isnan().all()
    mask = batch.target[:, :-1]
    logp = torch.full(mask.shape, -0.5, requires_grad=True)
    stats = TokenStats(torch.where(mask, logp, torch.full_like(logp, float("nan"))), torch.zeros_like(logp), mask)
    plain, _ = pg_loss(stats, batch, beta=0.0)
    capped, metrics = pg_loss(stats, batch, beta=0.0, is_cap=1.2)  # exp(-0.5 + 1.0) = 1.65 -> capped at 1.2
    first, second = b0 - a0, b1 - a1
    assert float(plain) == pytest.approx(0.5)
    assert float(capped) == pytest.approx(0.5 * (1.2 * first + second) / (first + second))
    assert metrics["is_weight"] == pytest.approx((1.2 * first + second) / (first + second))
    capped.backward()
    assert torch.isfinite(logp.grad).all()
    assert logp.grad[0, a0 - 1:b0 - 1].max() < logp.grad[0, a1 - 1:b1 - 1].min() < 0, "the weighted span pulls harder"


def test_the_policy_legal_rate_counts_the_trained_roles_moves_only():
    """metrics.jsonl's two legal-move rates: the trained role's moves (as eval.json counts them) and every move."""
    turns = [TurnRecord(0, "player_0", "policy", "", "hi", False, "no proposal"),
             TurnRecord(1, "player_1", "scripted", "", "[propose] ...", True),
             TurnRecord(2, "player_0", "policy", "", "hi", False, "no proposal"),
             TurnRecord(3, "player_1", "scripted", "", "[accept]", True)]
    episode = Episode("e", "negotiation-v0", {}, 0, {"player_0": "policy", "player_1": "scripted"}, {}, turns=turns)
    metrics = episode_metrics([episode], ["player_0"])
    assert metrics["policy_legal_rate"] == 0.0 and metrics["all_legal_rate"] == 0.5
