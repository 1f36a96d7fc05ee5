"""`activation_patch_sweep` (lib/patching.py) against TransformerLens's activation-patching family, site by
site, on prompt pairs no other test uses; the per-head sweep is its specialisation, with equal figures."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from transformer_lens import patching as tl
from transformer_lens.utilities import get_act_name

from attnclaims.heads import every_head
from attnclaims.interventions import SITES, PatchActivation, PatchHeads
from attnclaims.metrics import logit_diff
from attnclaims.patching import activation_patch_sweep, attribution_patch_sweep, head_out_patch_sweep
from attnclaims.sweep import per_head, run_variants

# site, our index, TransformerLens's function (whole grid: toys)
FAMILY = [
    ("resid_pre", ("layer", "pos"), tl.get_act_patch_resid_pre),
    ("resid_mid", ("layer", "pos"), tl.get_act_patch_resid_mid),
    ("attn_out", ("layer", "pos"), tl.get_act_patch_attn_out),
    ("mlp_out", ("layer", "pos"), tl.get_act_patch_mlp_out),
    ("z", ("layer", "pos", "head"), tl.get_act_patch_attn_head_out_by_pos),
    ("q", ("layer", "pos", "head"), tl.get_act_patch_attn_head_q_by_pos),
    ("v", ("layer", "pos", "head"), tl.get_act_patch_attn_head_v_by_pos),
    ("z", ("layer", "head"), tl.get_act_patch_attn_head_out_all_pos),
    ("k", ("layer", "head"), tl.get_act_patch_attn_head_k_all_pos),
    ("pattern", ("layer", "head"), tl.get_act_patch_attn_head_pattern_all_pos),
    ("pattern", ("layer", "head", "dest_pos"), tl.get_act_patch_attn_head_pattern_by_pos),
]


def pair(model, length: int = 7, seed: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    """Two prompts, clean and corrupted differing in positions 2-3."""
    g = torch.Generator().manual_seed(seed)
    bos = torch.zeros(2, 1, dtype=torch.long)
    clean = torch.cat([bos, torch.randint(2, model.cfg.d_vocab, (2, length - 1), generator=g)], 1)
    corrupted = clean.clone()
    corrupted[:, 2:4] = torch.randint(2, model.cfg.d_vocab, (2, 2), generator=g)
    return clean, corrupted


def close(ours: torch.Tensor, oracle: torch.Tensor) -> float:
    """max |ours - TL| relative to the result's scale (at least 1)."""
    oracle = oracle.cpu().float()
    return float((ours - oracle).abs().max()) / max(1.0, float(oracle.abs().max()))


def assert_the_whole_grid_equals_transformer_lens(model, site, index, oracle, seed: int) -> None:
    clean, corrupted = pair(model, seed=seed)
    metric = logit_diff(5, 7)
    _, cache = model.run_with_cache(clean)
    expected = oracle(model, corrupted, cache, metric)
    ours = activation_patch_sweep(
        model,
        clean_tokens=clean,
        corrupted_tokens=corrupted,
        metric=metric,
        site=site,
        index=index,
        show_progress=False,
    )
    assert ours.shape == expected.shape
    assert close(ours, expected) <= 1e-4
    assert float(ours.std()) > 0  # the patches act: a sweep of equal cells would pass any parity test


@pytest.mark.parametrize("site, index, oracle", FAMILY, ids=[f"{s}-{'-'.join(i)}" for s, i, _ in FAMILY])
def test_every_site_equals_transformer_lens_on_the_toy(toy_mlp, site, index, oracle):
    assert_the_whole_grid_equals_transformer_lens(toy_mlp, site, index, oracle, seed=11)


ARCHITECTURES = ["gpt2", "Qwen/Qwen2-0.5B", "meta-llama/Llama-3.2-1B"]  # names pick TL's adapter only


@pytest.fixture(scope="module", params=ARCHITECTURES, ids=["gpt2", "qwen2", "llama-gqa"])
def random_model(request, tmp_path_factory):
    """A 2-layer random-weight model of each architecture (Qwen2 and Llama with 4 query heads sharing 2
    key/value heads), with SmolLM2's tokenizer, bridged offline."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import (
        AutoTokenizer,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from attnclaims.models import CHECKPOINTS, checkpoint_folder

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_folder(CHECKPOINTS["smollm2-135m"])))
    sizes = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2)
    sizes.update(num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    hf = {
        "gpt2": lambda: GPT2LMHeadModel(
            GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4)
        ),
        "Qwen/Qwen2-0.5B": lambda: Qwen2ForCausalLM(Qwen2Config(**sizes)),
        "meta-llama/Llama-3.2-1B": lambda: LlamaForCausalLM(LlamaConfig(**sizes)),
    }[request.param]().eval()
    with pytest.MonkeyPatch.context() as offline:
        offline.setenv("HF_HUB_OFFLINE", "1")
        bridge = TransformerBridge.boot_transformers(
            request.param, hf_model=hf, tokenizer=tokenizer, device="cpu"
        )
    bridge.requires_grad_(False)
    return bridge


@pytest.mark.parametrize("site, index, oracle", FAMILY, ids=[f"{s}-{'-'.join(i)}" for s, i, _ in FAMILY])
def test_every_site_equals_transformer_lens_on_random_architectures(random_model, site, index, oracle):
    """GPT-2, Qwen2 and Llama with grouped-query attention, random weights: the whole grid against
    TransformerLens (k and v per key/value head, q per query head)."""
    assert_the_whole_grid_equals_transformer_lens(random_model, site, index, oracle, seed=21)


@pytest.mark.real_model
@pytest.mark.parametrize(
    "site, index, setter",
    [
        ("resid_pre", ("layer", "pos"), tl.layer_pos_patch_setter),
        ("attn_out", ("layer", "pos"), tl.layer_pos_patch_setter),
        ("mlp_out", ("layer", "pos"), tl.layer_pos_patch_setter),
        ("z", ("layer", "pos", "head"), tl.layer_pos_head_vector_patch_setter),
    ],
)
def test_the_sites_equal_transformer_lens_on_the_real_model(model, site, index, setter):
    """On the model under test and a prompt pair no other test uses, TransformerLens's own loop
    (generic_activation_patch) on one cell per layer against ours: the whole layer x position sweep,
    and for heads by position (270 heads x positions) the same cells as PatchActivation variants."""
    clean = model.to_tokens("Snow falls, so she puts on her gloves")
    corrupted = model.to_tokens("Sun shines, so she puts on her gloves")
    assert clean.shape == corrupted.shape
    metric = logit_diff(model.to_single_token(" warm"), model.to_single_token(" light"))
    _, cache = model.run_with_cache(clean)
    sizes = {"pos": clean.shape[1], "head": model.cfg.n_heads}
    g = torch.Generator().manual_seed(0)
    cells = [
        (layer, *(int(torch.randint(0, sizes[axis], (1,), generator=g)) for axis in index[1:]))
        for layer in range(model.cfg.n_layers)
    ]
    sample = pd.DataFrame(cells, columns=["layer", *("head_index" if a == "head" else a for a in index[1:])])
    expected = tl.generic_activation_patch(model, corrupted, cache, metric, setter, site, index_df=sample)
    if len(index) == 2:
        ours = activation_patch_sweep(
            model, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric, site=site, index=index
        )
        picked = ours[tuple(torch.tensor(sample[c].to_numpy()) for c in sample.columns)]
        assert float(ours.std()) > 0
    else:
        variants = {
            cell: PatchActivation(site, cell[0], tuple(zip(index[1:], cell[1:])), cache) for cell in cells
        }
        values = run_variants(model, corrupted, variants, metric)
        picked = torch.stack([values[cell] for cell in cells])
    assert close(picked, expected) <= 1e-4
    assert float(expected.std()) > 0  # the cells differ: a parity test on equal values passes any method


def test_the_head_out_sweep_is_the_generic_sweep_at_site_z(toy_mlp):
    clean, corrupted = pair(toy_mlp, seed=12)
    metric = logit_diff(3, 9)
    generic = activation_patch_sweep(
        toy_mlp,
        clean_tokens=clean,
        corrupted_tokens=corrupted,
        metric=metric,
        site="z",
        index=("layer", "head"),
        show_progress=False,
    )
    named = head_out_patch_sweep(
        toy_mlp, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric, show_progress=False
    )
    assert torch.equal(generic, named)
    _, cache = toy_mlp.run_with_cache(clean)  # and the figures of the per-head spec it replaced
    by_spec = run_variants(
        toy_mlp, corrupted, {head: PatchHeads((head,), cache) for head in every_head(toy_mlp)}, metric
    )
    assert torch.equal(named, per_head(toy_mlp, by_spec))


def test_bad_sites_and_axes_are_named(toy):
    clean, corrupted = pair(toy)
    run = lambda **kw: activation_patch_sweep(
        toy, clean_tokens=clean, corrupted_tokens=corrupted, metric=logit_diff(1, 2), **kw
    )
    with pytest.raises(ValueError, match="no activation site 'resid'; use one of resid_pre"):
        run(site="resid")
    with pytest.raises(ValueError, match="resid_pre activations have no 'head' axis"):
        run(site="resid_pre", index=("layer", "head"))
    with pytest.raises(ValueError, match="'layer' first"):
        run(site="z", index=("head", "layer"))
    with pytest.raises(ValueError, match="no activation site"):
        PatchActivation("embed", 0, (), None)


ATTRIBUTED = [("resid_pre", ("layer", "pos")), ("attn_out", ("layer", "pos")), ("mlp_out", ("layer", "pos"))]
ATTRIBUTED += [("z", ("layer", "pos", "head"))]


@pytest.mark.parametrize("site, index", ATTRIBUTED, ids=[s for s, _ in ATTRIBUTED])
def test_attribution_at_a_site_is_its_directional_derivative(toy_mlp, site, index):
    """Each cell of attribution_patch_sweep is d metric / d eps of the corrupted run with eps times
    (clean - corrupted) added to that cell (a central difference, eps = 1e-3)."""
    clean, corrupted = pair(toy_mlp, length=9, seed=13)
    metric = logit_diff(5, 7)
    approx = attribution_patch_sweep(
        toy_mlp, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric, site=site, index=index
    )
    _, clean_cache = toy_mlp.run_with_cache(clean)
    _, corrupted_cache = toy_mlp.run_with_cache(corrupted)
    axes = SITES[site]
    for cell in [(0, 2, 1), (1, 3, 0), (1, 8, 2)]:
        name = get_act_name(site, cell[0])
        where = [slice(None)] * clean_cache[name].ndim
        for axis, value in zip(index[1:], cell[1:]):
            where[axes[axis]] = value
        where = tuple(where)
        step = (clean_cache[name] - corrupted_cache[name])[where]

        def moved(eps, name=name, where=where, step=step):
            def hook(act, hook):
                act[where] += eps * step

            with torch.no_grad():
                return float(metric(toy_mlp.run_with_hooks(corrupted, fwd_hooks=[(name, hook)])))

        slope = (moved(1e-3) - moved(-1e-3)) / 2e-3
        assert abs(float(approx[cell[: len(index)]]) - slope) <= 1e-3 * max(1.0, abs(slope))


@pytest.mark.parametrize("site, index", ATTRIBUTED, ids=[s for s, _ in ATTRIBUTED])
def test_attribution_ranks_cells_as_exact_patching_does_beyond_a_random_baseline(toy_mlp, site, index):
    """Rank agreement is compared on cells whose exact effect is not ~0 (a premise: at least 5 such
    cells), against a random score on the same cells. On the toy it holds at attn_out, mlp_out and z
    (rho >= 0.9); at resid_pre, where a patch replaces a whole token's embedding, the first-order
    estimate ranks poorly (0.4), which is recorded, not hidden."""
    clean, corrupted = pair(toy_mlp, length=9, seed=13)
    metric = logit_diff(5, 7)
    exact = activation_patch_sweep(
        toy_mlp,
        clean_tokens=clean,
        corrupted_tokens=corrupted,
        metric=metric,
        site=site,
        index=index,
        show_progress=False,
    ) - float(metric(toy_mlp(corrupted)))
    approx = attribution_patch_sweep(
        toy_mlp, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric, site=site, index=index
    )
    live = exact.abs() > 1e-3 * exact.abs().max()
    assert int(live.sum()) >= 5, "the patches leave the metric in place: nothing to rank"
    rho = spearmanr(exact[live], approx[live]).statistic
    noise = spearmanr(
        exact[live], torch.randn(int(live.sum()), generator=torch.Generator().manual_seed(0))
    ).statistic
    if site == "resid_pre":
        assert rho < 0.9  # the recorded weakness: if this starts to hold, move resid_pre into the claim
    else:
        assert rho >= 0.9 and rho > noise + 0.3, (rho, noise)
