"""Identities behind the entailment hypothesis's interventions (lib/pair_hooks.py, lib/hooks.py), on
smollm2-135m and on hand-made rows: what each edit must leave unchanged, and where two edits must agree."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.utilities import get_act_name

from attnclaims import hooks as H
from attnclaims.hooks import move_fraction, partner_row
from attnclaims.interventions import AblateHeads, MoveAttention
from attnclaims.metrics import logit_diff
from attnclaims.pair_hooks import freeze_after, path_to_queries, watch
from attnclaims.patching import split_qkv_input
from attnclaims.sweep import run_variants

TEXT = (
    "If it is wet, I take an umbrella. When I take an umbrella, I wear boots, not shoes. "
    "Today it is wet, so I wear"
)


def test_partner_row_swaps_the_texts_of_each_pair():
    rows = torch.arange(12.0).reshape(4, 3)  # pairs (0, 1) and (2, 3)
    assert torch.equal(partner_row(rows), rows[[1, 0, 3, 2]])
    assert torch.equal(partner_row(partner_row(rows)), rows)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
def test_move_fraction_keeps_rows_normalised_and_matches_move_row_at_one(alpha):
    row = torch.softmax(torch.randn(3, 7, generator=torch.Generator().manual_seed(0)), -1)
    src, dst = torch.tensor([1, 2, 3]), torch.tensor([4, 0, 6])
    out = move_fraction(src, dst, alpha)(row)
    torch.testing.assert_close(out.sum(-1), torch.ones(3))
    torch.testing.assert_close(out[torch.arange(3), src], row[torch.arange(3), src] * (1 - alpha))
    if alpha == 1.0:
        torch.testing.assert_close(out, H.move_row(src, dst)(row))
    if alpha == 0.0:
        torch.testing.assert_close(out, row)


def _positions(model):
    tokens = model.to_tokens(TEXT)
    pieces = model.to_str_tokens(tokens)
    return tokens, pieces.index(" boots"), pieces.index(" shoes")


def _late(model) -> tuple[int, int]:
    """A late head (where the entailment switch heads sit on smollm2-135m: L23 of 30)."""
    return (model.cfg.n_layers * 3) // 4, model.cfg.n_heads - 1


@pytest.mark.real_model
def test_final_row_value_move_equals_the_pattern_move(model):
    """z = sum_k p_k v_k: at the final row, reading v_alternative where the head reads v_entailed
    (v_entailed := v_alternative) moves exactly the weight p_entailed to the alternative, so "what"
    and "where" cannot be told apart there at equal weight; the hypothesis compares patterns and
    values taken from the other fact instead."""
    tokens, boots, shoes = _positions(model)
    heads = [(1, 0), _late(model), (_late(model)[0], 0)]

    def value_move(values):
        values = values.clone()
        values[:, boots] = values[:, shoes]
        return values

    by_values = model.run_with_hooks(
        tokens, fwd_hooks=H.edit_head_values(model, heads, value_move, query_pos=-1)
    )
    by_pattern = model.run_with_hooks(tokens, fwd_hooks=MoveAttention(heads, boots, shoes).hooks(model))
    assert (by_values - model(tokens)).abs().max() > 1e-3
    torch.testing.assert_close(by_values, by_pattern, atol=1e-4, rtol=0)


def _clean_finals(model, tokens) -> dict:
    names = [(get_act_name(k, layer), layer) for layer in range(model.cfg.n_layers) for k in ("z", "mlp_out")]
    names.append(("ln_final.hook_scale", model.cfg.n_layers))
    store: dict = {}
    watches = [
        hook for name, layer in names for hook in watch(store, "clean", name, layer=layer).hooks(model)
    ]
    model.run_with_hooks(tokens, fwd_hooks=watches)
    return store


@pytest.mark.real_model
def test_freezing_later_layers_hides_them_and_leaves_the_clean_run(model):
    tokens, boots, shoes = _positions(model)
    metric = logit_diff(model.to_single_token(" boots"), model.to_single_token(" shoes"))
    clean = _clean_finals(model, tokens)
    head = _late(model)
    later = (model.cfg.n_layers - 3, 0)
    switch = MoveAttention([head], boots, shoes)
    values = run_variants(
        model,
        tokens,
        {
            "clean": [],
            "frozen": freeze_after(model, [head], clean, "clean"),
            "later_ablated": AblateHeads([later]),
            "later_ablated_frozen": AblateHeads([later]) + freeze_after(model, [head], clean, "clean"),
            "switch": switch,
            "switch_frozen": switch + freeze_after(model, [head], clean, "clean"),
        },
        metric,
    )
    torch.testing.assert_close(values["frozen"], values["clean"], atol=1e-4, rtol=0)
    assert abs(values["later_ablated"] - values["clean"]) > 1e-3
    torch.testing.assert_close(values["later_ablated_frozen"], values["clean"], atol=1e-4, rtol=0)
    assert abs(values["switch_frozen"] - values["clean"]) > 1e-3
    # The direct effect by hand: the head's change of output, through ln_final's clean scale, unembedded.
    seen: dict = {}
    z = get_act_name("z", head[0])
    model.run_with_hooks(tokens, fwd_hooks=(switch + watch(seen, "switch", z, layer=head[0])).hooks(model))
    dz = seen[("switch", z)][0, head[1]] - clean[("clean", z)][0, head[1]]
    d_resid = dz @ model.blocks[head[0]].attn.W_O[head[1]]
    scale = clean[("clean", "ln_final.hook_scale")][0]
    direction = model.W_U[:, model.to_single_token(" boots")] - model.W_U[:, model.to_single_token(" shoes")]
    by_hand = (d_resid / scale * model.ln_final.original_component.weight) @ direction
    torch.testing.assert_close(values["switch_frozen"] - values["clean"], by_hand, atol=1e-3, rtol=1e-3)


@pytest.mark.real_model
def test_path_to_queries_is_an_identity_when_the_mean_is_the_prompt_itself(model):
    """With one prompt the mean-ablation reference is the prompt's own activation: nothing moves."""
    tokens, _, _ = _positions(model)
    reference = {}
    sender = (model.cfg.n_layers // 2, 0)
    z = get_act_name("z", sender[0])
    model.run_with_hooks(
        tokens, fwd_hooks=watch(reference, "clean", z, layer=sender[0], final=False).hooks(model)
    )
    reference = {z: reference[("clean", z)]}
    metric = logit_diff(model.to_single_token(" boots"), model.to_single_token(" shoes"))
    with split_qkv_input(model):
        values = run_variants(
            model,
            tokens,
            {"clean": [], "path": path_to_queries(model, [sender], [_late(model)], reference)},
            metric,
        )
    torch.testing.assert_close(values["path"], values["clean"], atol=1e-4, rtol=0)


@pytest.mark.real_model
def test_switched_head_output_is_linear_in_the_moved_weight(model):
    """Why the dose-response is no claim: moving a fraction alpha of a head's final-row weight from
    one answer to the other changes its output z by alpha times the full move, by construction."""
    tokens, boots, shoes = _positions(model)
    head = _late(model)
    name = get_act_name("z", head[0])
    outputs = {}

    def keep(z, hook):
        outputs[alpha] = z[0, -1, head[1]].clone()

    for alpha in (0.0, 0.3, 1.0):
        model.run_with_hooks(
            tokens, fwd_hooks=[*MoveAttention([head], boots, shoes, alpha).hooks(model), (name, keep)]
        )
    torch.testing.assert_close(
        outputs[0.3], outputs[0.0] + 0.3 * (outputs[1.0] - outputs[0.0]), atol=1e-5, rtol=1e-4
    )


@pytest.mark.real_model
def test_values_before_the_fact_word_are_the_same_in_both_texts(model):
    """Why "what the heads read" was no claim: under the causal mask every position before the fact
    word sees the same tokens in both texts of a pair, so its values (and the answers' values, which
    come before the fact) are identical, and swapping them between the texts changes nothing."""
    from attnclaims.prompts.entailment import minimal_pairs
    from attnclaims.protocols import tokenize_pairs
    from attnclaims.studies.entailment_pairs import pair_name

    kept, _ = tokenize_pairs(model, minimal_pairs(2)[:4], pair_name)
    pair = kept[0]
    fact = int((pair.tokens[0] != pair.tokens[1]).nonzero()[0])
    _, cache = model.run_with_cache(pair.tokens, names_filter=lambda n: n.endswith("hook_v"))
    for layer in range(model.cfg.n_layers):
        v = cache[get_act_name("v", layer)]  # [2, pos, kv_head, d_head]
        torch.testing.assert_close(v[0, :fact], v[1, :fact], atol=1e-5, rtol=0)
        assert pair.answer_pos[0] < fact and pair.answer_pos[1] < fact


def test_twin_families_are_one_group_and_groups_share_no_answer():
    from attnclaims.prompts.entailment import FAMILIES
    from attnclaims.studies.entailment_pairs import twin_groups

    group = twin_groups(FAMILIES)
    assert group["umbrella"] == group["dax"] == "dax+umbrella"
    assert group["fire"] == group["room"]  # both "drink": one unit, though their answers differ
    answers: dict[str, set] = {}
    for f in FAMILIES:
        for word in (f.verb, *f.answers):
            answers.setdefault(word, set()).add(group[f.name])
    assert all(len(groups) == 1 for groups in answers.values())
    assert len(set(group.values())) >= 16


def test_other_groups_mean_never_reads_the_bucket_and_matches_positions_from_the_end():
    import pandas as pd

    from attnclaims.studies.entailment_sweep import Bucket, other_groups_mean

    def bucket(groups, length, value):
        rows = pd.DataFrame({"group": groups, "hops": 2})
        acts = torch.full((len(groups), length, 1), float(value))
        acts[:, 0] = -1.0  # BOS
        acts[:, -1] = 10 * value  # the final position
        dummy = torch.zeros(len(groups), dtype=torch.long)
        return Bucket(torch.zeros(len(groups), length), dummy, dummy, dummy, dummy, rows), {"z": acts}

    own, own_store = bucket(["g1", "g1"], 5, 100)
    longer, longer_store = bucket(["g2"], 7, 2)
    shorter, shorter_store = bucket(["g3", "g3"], 4, 4)
    mean = other_groups_mean([own, longer, shorter], [own_store, longer_store, shorter_store], own, "z")
    assert mean.shape == (1, 5, 1)
    assert mean[0, 0, 0] == -1.0  # BOS from BOS
    assert mean[0, -1, 0] == pytest.approx((20 + 2 * 40) / 3)  # the final positions, own group left out
    assert mean[0, 1, 0] == pytest.approx(2.0)  # only the longer prompt reaches this far from the end


def test_a_switch_is_the_alternative_becoming_the_answer_where_it_was_not():
    import pandas as pd

    from attnclaims.arms import CLEAN
    from attnclaims.studies.entailment_arms import REDIRECT
    from attnclaims.studies.entailment_results import TOP1, EntailmentStudy

    table = pd.DataFrame(
        {
            "pair": [0, 0, 1, 1] * 2,
            "text": ["a", "b"] * 4,
            "family": "f",
            "group": ["g1", "g1", "g2", "g2"] * 2,
            "arm": [CLEAN.name] * 4 + [REDIRECT.name] * 4,
            "measure": TOP1,
            "value": [0.0, 1.0, 0.0, 0.0] + [1.0, 1.0, 0.0, 1.0],
        }
    )
    study = EntailmentStudy("m", None, {}, table, None, None, None, None, None, None, 0.0)
    rows = study.rows(REDIRECT, TOP1, switchable=True)
    assert list(zip(rows.pair, rows.text)) == [(0, "a"), (1, "a"), (1, "b")]  # (0, b) already answered it
    assert rows.value.tolist() == [1.0, 0.0, 1.0]
    assert study.switch_rate(REDIRECT).to_dict() == {"g1": 1.0, "g2": 0.5}


def test_the_table_sensitivity_is_the_pair_sensitivity():
    import pandas as pd

    from attnclaims.protocols import pair_sensitivity
    from attnclaims.studies.entailment_sweep import sensitivity_by_pair

    ld = torch.tensor([1.5, 0.5, -2.0, 1.0, 0.25, 0.25])  # pairs p0, p1, p2: rows a, b
    frame = pd.DataFrame({"pair": ["p0", "p0", "p1", "p1", "p2", "p2"], "text": ["a", "b"] * 3, "value": ld})
    shuffled = frame.sample(frac=1.0, random_state=0)  # the table's row order does not matter
    assert sensitivity_by_pair(shuffled).value.tolist() == pair_sensitivity(ld).tolist() == [2.0, -1.0, 0.5]
    with pytest.raises(ValueError, match="two texts"):
        sensitivity_by_pair(frame.iloc[1:])


@pytest.mark.real_model
def test_bridge_positions_are_each_bridges_last_token_in_its_condition_rule(model):
    from attnclaims.prompts.entailment import FAMILIES, pair
    from attnclaims.protocols import tokenize_pair

    p = pair(
        FAMILIES[0], 2, "ba/ab"
    )  # "If it is dry, I leave the umbrella at home. If it is wet, I take ..."
    tokens = tokenize_pair(model, p.texts[0], p.answers[0], p.texts[1], p.answers[1], "umbrella", p.bridges)
    words = model.to_str_tokens(tokens.tokens[0])
    a, b = tokens.bridge_pos
    assert words[a].strip() == "umbrella" and words[a + 1] == "." and words[a - 1].strip() == "an"
    assert words[b].strip() == "home" and b < a  # bridge b's condition rule comes first in "ba" orders


@pytest.mark.real_model
def test_replacing_the_token_before_each_answer_is_the_text_with_it_replaced(model):
    from attnclaims.arms import CLEAN
    from attnclaims.prompts.entailment import minimal_pairs
    from attnclaims.protocols import tokenize_pairs
    from attnclaims.studies.entailment_arms import Prompts, ReplaceBefore
    from attnclaims.studies.entailment_pairs import pair_name
    from attnclaims.studies.entailment_sweep import buckets, ld_metric

    kept, _ = tokenize_pairs(model, minimal_pairs(2)[:2], pair_name)
    (bucket,) = buckets(kept[:1], {kept[0].name: {"split": "x"}})
    arms = {arm: arm.build(Prompts(model, bucket, {})) for arm in (ReplaceBefore(1), ReplaceBefore(2))}
    values = run_variants(model, bucket.tokens, {CLEAN: [], **arms}, ld_metric(bucket))
    word = model.to_single_token(" indeed")
    for arm in arms:
        edited = bucket.tokens.clone()
        for pos in (bucket.entailed_pos, bucket.alternative_pos):
            edited[torch.arange(len(edited)), pos - arm.offset] = word
        expected = ld_metric(bucket)(model(edited))
        torch.testing.assert_close(values[arm], expected, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(values[arm], values[CLEAN])
