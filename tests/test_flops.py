"""MAC counter: the paper convention on the 7B shapes and agreement with fvcore on the tiny model."""

import torch

from bench.core.flops import MacMeter
from bench.core.models.accounting import policy_step_macs


def test_openvla_7b_paper_convention_prefill():
    r = policy_step_macs("openvla-7b", text_tokens=28).report()
    n, d, m = 285, 4096, 11008
    assert r["paper_prefill_macs"] == 32 * (4 * n * d * d + 2 * n * n * d + 3 * n * d * m)
    assert abs(r["paper_prefill_macs"] / 1e12 - 1.867) < 0.001
    assert r["flops_total"] == 2 * r["macs_total"]
    assert {"macs_vision", "macs_projector", "macs_prefill", "macs_decode", "macs_lm_head"} <= set(r)


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
