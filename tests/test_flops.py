"""MAC counter: the paper convention on the 7B shapes and agreement with fvcore on the tiny model."""

import torch

from bench.core.flops import MacMeter
from bench.core.models.accounting import cogact_step_macs, policy_step_macs


def test_openvla_7b_paper_convention_prefill():
    r = policy_step_macs("openvla-7b", text_tokens=28).report()
    n, d, m = 285, 4096, 11008
    assert r["paper_prefill_macs"] == 32 * (4 * n * d * d + 2 * n * n * d + 3 * n * d * m)
    assert abs(r["paper_prefill_macs"] / 1e12 - 1.867) < 0.001
    assert r["flops_total"] == 2 * r["macs_total"]
    assert {"macs_vision", "macs_projector", "macs_prefill", "macs_decode", "macs_lm_head"} <= set(r)


def test_cogact_base_step_by_hand():
    """One prefill of n = 1 + 256 + 28 + 2 (empty + cognition token) and DiT-B × 10 DDIM steps × CFG batch 2."""
    r = cogact_step_macs("cogact-base", text_tokens=28).report()
    n, d, m = 287, 4096, 11008
    assert r["paper_prefill_macs"] == 32 * (4 * n * d * d + 2 * n * n * d + 3 * n * d * m)
    h, depth, rows = 768, 12, 17  # DiT-B over [condition, 16 actions]
    forward = (depth * (rows * 12 * h * h + 2 * rows * rows * h) + 16 * 7 * h + 256 * h + h * h + 4096 * h
               + rows * h * 7)
    assert r["macs_action_head"] == 10 * 2 * forward
    assert "macs_decode" not in r and "macs_lm_head" not in r


class PrefillForward(torch.nn.Module):
    """Tensor-in/tensor-out wrapper fvcore can trace: pixels + ids → logits of the last prompt token."""

    def __init__(self, model, meter=None):
        super().__init__()
        self.model, self.meter = model, meter

    def forward(self, pixels, ids):
        embeds = self.model.prefill_embeddings(pixels, ids, self.meter)
        cache = self.model.new_cache(embeds.shape[1])
        hidden, _ = self.model.language_model.prefill(embeds, cache, None, self.meter)
        return self.model.language_model.logits(hidden, self.meter)


def sdpa_macs(inputs, outputs):
    q, k = inputs[0].type().sizes(), inputs[1].type().sizes()
    return 2 * q[0] * q[1] * q[2] * k[2] * q[3]  # QKᵀ and PV, per head


def test_counter_agrees_with_fvcore(tiny_model):
    from fvcore.nn import FlopCountAnalysis

    pixels, ids = torch.randn(1, 6, 224, 224), torch.randint(4, 500, (1, 25))
    meter = MacMeter()
    with torch.no_grad():
        PrefillForward(tiny_model, meter)(pixels, ids)
        analysis = FlopCountAnalysis(PrefillForward(tiny_model), (pixels, ids))
        analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_macs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        theirs = analysis.total()
    ours = meter.total
    assert abs(ours - theirs) / theirs < 0.01, (ours, theirs)
