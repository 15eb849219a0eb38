"""The heads' analytic pullbacks (the training step's gradients without autograd through the
head) against autograd of the same objective, for every registered method whose head has one;
and the in-place batched SGD against torch.optim.SGD."""
import pytest
import torch

from lttools.retrain.heads import HEADS
from lttools.retrain.plan import make_plan, resolve_auto
from lttools.retrain.registry import all_methods
from lttools.retrain.objective import analytic_gradient, method_loss, step_gradients
from lttools.retrain.optimizer import BatchedSGD
from lttools.retrain.plan import hyper_tensors

FAST = sorted(n for n, m in all_methods().items() if hasattr(HEADS[m.head], "forward")
              and not m.posthoc)


def test_every_head_has_a_pullback_and_every_trained_method_is_checked():
    assert all(hasattr(h, "forward") for h in HEADS.values())
    assert set(FAST) == {n for n, m in all_methods().items() if not m.posthoc}


@pytest.mark.parametrize("name", FAST)
def test_pullback_gradients_equal_autograd(name):
    heads, k, d, b = 3, 7, 5, 11
    g = torch.Generator().manual_seed(0)
    counts = torch.tensor([40, 20, 10, 6, 3, 2, 1])
    plan = resolve_auto(make_plan(name, {}, {"seeds": list(range(heads))}), counts.numpy())
    m = plan.method
    hp = hyper_tensors(plan, torch.device("cpu"))
    frozen = {"w": torch.randn(k, d, generator=g), "b": torch.randn(k, generator=g)}
    params = HEADS[m.head].init(frozen["w"], frozen["b"], heads, m.reinit,
                                [torch.Generator().manual_seed(s) for s in range(heads)])
    params = {n: (p + 0.1 * torch.randn(p.shape, generator=g)).requires_grad_(True)
              for n, p in params.items()}
    x = torch.randn(heads, b, d, generator=g).relu()
    y = torch.randint(0, k, (heads, b), generator=g)
    cw = m.class_weights(counts, hp, 0, 10) if m.class_weights else None
    loss = method_loss(plan, params, frozen, x, y, hp, counts, cw)
    want = dict(zip(params, torch.autograd.grad(loss.sum(), list(params.values()))))
    got = step_gradients(plan, params, frozen, x, y, hp, counts, cw)
    assert set(got) == set(want)
    for n in want:
        assert got[n].shape == want[n].shape
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-7)
        assert want[n].abs().max() > 0


def test_batched_sgd_equals_torch_sgd_per_head():
    g = torch.Generator().manual_seed(1)
    w0 = torch.randn(2, 4, 3, generator=g)
    lr, mu, wd = torch.tensor([0.1, 0.03]), torch.tensor([0.9, 0.5]), torch.tensor([1e-3, 0.1])
    params = {"w": w0.clone()}
    opt = BatchedSGD(params, mu, wd)
    alone = [torch.nn.Parameter(w0[h].clone()) for h in range(2)]
    sgds = [torch.optim.SGD([alone[h]], lr=float(lr[h]), momentum=float(mu[h]),
                            weight_decay=float(wd[h])) for h in range(2)]
    for _ in range(4):
        grad = torch.randn(2, 4, 3, generator=g)
        for h in range(2):
            alone[h].grad = grad[h].clone()
            sgds[h].step()
        given = grad.transpose(1, 2).contiguous().transpose(1, 2)  # a non-contiguous gradient
        opt.step({"w": given}, {"w": lr})
    for h in range(2):
        torch.testing.assert_close(params["w"][h], alone[h].detach(), rtol=1e-6, atol=1e-7)


def test_batched_sgd_copes_with_an_expanded_gradient():
    params = {"b": torch.zeros(2, 3)}
    opt = BatchedSGD(params, torch.zeros(2), torch.zeros(2))
    opt.step({"b": torch.ones(1, 3).expand(2, 3)}, {"b": torch.ones(2)})
    assert torch.equal(params["b"], -torch.ones(2, 3))


@pytest.mark.parametrize("name", sorted(n for n, m in all_methods().items() if m.loss_grad))
def test_a_methods_loss_gradient_equals_autograd_of_its_loss(name):
    g = torch.Generator().manual_seed(2)
    counts = torch.tensor([40, 20, 10, 6, 3, 2, 1])
    plan = resolve_auto(make_plan(name, {}, {"seeds": [0, 1]}), counts.numpy())
    hp = hyper_tensors(plan, torch.device("cpu"))
    z = (3 * torch.randn(2, 9, 7, generator=g)).requires_grad_(True)
    y = torch.randint(0, 7, (2, 9), generator=g)
    m = plan.method
    want = torch.autograd.grad(m.loss(z, y, hp, counts).sum(), z)[0]
    torch.testing.assert_close(m.loss_grad(z.detach(), y, hp, counts), want, rtol=1e-5, atol=1e-7)


def test_the_built_in_methods_train_without_autograd():
    plans = {n: make_plan(n, {}, {"seeds": [0]}) for n in all_methods()}
    assert {n for n, p in plans.items() if analytic_gradient(p) and p.method.posthoc is None} == {
        "ce", "los", "label_smoothing", "cb_reweight", "crt", "sqrt_sampling",
        "progressive_sampling", "lws", "la_loss", "mislas", "focal", "weight_balancing",
        "ldam_drw", "disalign"}


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_the_focal_gradient_at_every_gamma(gamma):
    from lttools.retrain import pieces as P
    g = torch.Generator().manual_seed(3)
    z = (4 * torch.randn(2, 9, 7, generator=g)).requires_grad_(True)
    y = torch.randint(0, 7, (2, 9), generator=g)
    gam = torch.full((2,), gamma)
    want = torch.autograd.grad(P.focal(z, y, gam).sum(), z)[0]
    torch.testing.assert_close(P.focal_grad(z.detach(), y, gam), want, rtol=1e-5, atol=1e-7)


def test_a_head_without_a_pullback_trains_through_autograd(monkeypatch):
    """A head of one's own needs only init / logits / linear: autograd then does the rest."""
    from lttools.retrain import heads as H

    class PlainLinear:
        init, logits, linear = H.Linear.init, H.Linear.logits, H.Linear.linear

    monkeypatch.setitem(H.HEADS, "linear", PlainLinear())
    plan = make_plan("ce", {}, {"seeds": [0, 1]})
    g = torch.Generator().manual_seed(4)
    params = {"w": torch.randn(2, 5, 3, generator=g).requires_grad_(True),
              "b": torch.randn(2, 5, generator=g).requires_grad_(True)}
    x, y = torch.randn(2, 8, 3, generator=g), torch.randint(0, 5, (2, 8), generator=g)
    hp = hyper_tensors(plan, torch.device("cpu"))
    got = step_gradients(plan, params, {}, x, y, hp, None, None)
    monkeypatch.undo()
    want = step_gradients(plan, params, {}, x, y, hp, None, None)
    for n in params:
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-7)


def test_shared_features_through_every_head():
    from lttools.retrain.evaluation import shared_affine
    g = torch.Generator().manual_seed(5)
    x, w, b = (torch.randn(9, 4, generator=g), torch.randn(3, 6, 4, generator=g),
               torch.randn(3, 6, generator=g))
    torch.testing.assert_close(shared_affine(x, w, b), torch.einsum("nd,hkd->hnk", x, w)
                               + b[:, None, :], rtol=1e-5, atol=1e-6)
