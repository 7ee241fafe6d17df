"""KIND layers (issue 24, paper 43): W_y = U diag(g_y ⊙ σ) V with learngene and class-gated tailor components.

A weight is held in SVD form, split into two groups of components: ``learngenes`` (always on,
shared by every class: the common knowledge that transfers) and per-class ``tailors`` (class y
switches on its own block). Components are parameters of their own (``u_g, s_g, v_g`` and
``u_t, s_t, v_t``) so freezing the learngenes for a diversion is ``requires_grad_(False)`` on three
tensors. The gate is a fixed (K+1, r) 0/1 table: row y ∈ [0, K) = learngenes + class y's block,
row K (the "null" class of classifier-free guidance) = learngenes only.

Why the factored forward ``out = U((g_y ⊙ σ) ⊙ (V x))``: the gate differs per sample, so building
W_y per sample would cost B dense weights; the factors cost r·(m + n) per sample instead. For a
conv, V is a k×k conv to r channels and U a 1×1 conv back to ``out`` channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError


def gate_table(learngenes: int, tailors: int, num_classes: int) -> Tensor:
    """The (K+1, r) 0/1 gate: row y = learngenes + tailor block y; row K = learngenes only.

    Examples:
        >>> gate_table(1, 1, 2).tolist()
        [[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    r = learngenes + tailors * num_classes
    g = torch.zeros(num_classes + 1, r)
    g[:, :learngenes] = 1.0
    for y in range(num_classes):
        g[y, learngenes + y * tailors: learngenes + (y + 1) * tailors] = 1.0
    return g


class _KindBase(nn.Module):
    """Shared state and maths of :class:`KindLinear` and :class:`KindConv2d`.

    ``labels`` is set on the layer (by :func:`set_labels`) before the model's forward: None = every
    component on (the dense-equivalent weight), else a (B,) tensor of classes in [0, K].
    """

    def _init_kind(self, d_out: int, d_in: int, learngenes: int, tailors: int,
                   num_classes: int, bias: bool) -> None:
        if learngenes < 0 or tailors < 0 or (tailors and num_classes < 1):
            raise ConfigError(f"KIND layer: learngenes={learngenes}, tailors={tailors}, "
                              f"num_classes={num_classes} must be >= 0 (tailors need classes)")
        if learngenes + tailors * num_classes < 1:
            raise ConfigError("KIND layer: needs at least one component (learngenes or tailors)")
        self.d_out, self.d_in = d_out, d_in
        self.learngenes, self.tailors, self.num_classes = learngenes, tailors, num_classes
        rt = tailors * num_classes
        self.u_g = nn.Parameter(torch.zeros(d_out, learngenes))
        self.s_g = nn.Parameter(torch.zeros(learngenes))
        self.v_g = nn.Parameter(torch.zeros(learngenes, d_in))
        self.u_t = nn.Parameter(torch.zeros(d_out, rt))
        self.s_t = nn.Parameter(torch.zeros(rt))
        self.v_t = nn.Parameter(torch.zeros(rt, d_in))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None
        self.register_buffer("gate", gate_table(learngenes, tailors, num_classes))
        self.labels: Tensor | None = None

    @property
    def rank(self) -> int:
        return self.learngenes + self.tailors * self.num_classes

    def factors(self) -> tuple[Tensor, Tensor, Tensor]:
        """(U: out×r, σ: r, V: r×in) with learngenes first, then the tailor blocks by class."""
        return (torch.cat([self.u_g, self.u_t], 1), torch.cat([self.s_g, self.s_t]),
                torch.cat([self.v_g, self.v_t], 0))

    def scales(self, batch: int) -> Tensor:
        """(B, r) gated singular values g_y ⊙ σ for the current ``labels`` (all on when None)."""
        _, s, _ = self.factors()
        if self.labels is None:
            return s.expand(batch, -1)
        return self.gate[self.labels.long()] * s

    def dense_matrix(self, y: int | None = None) -> Tensor:
        """W_y as an (out, in) matrix: U diag(g_y ⊙ σ) V (y None: every component)."""
        u, s, v = self.factors()
        g = s if y is None else self.gate[int(y)] * s
        return (u * g) @ v

    @torch.no_grad()
    def init_from_matrix(self, w: Tensor, generator: torch.Generator | None = None) -> None:
        """Set the factors from the SVD of ``w`` (out, in): top components to the learngenes,
        the next ones to the tailor blocks (class 0 first). Components beyond rank(w) get random
        unit u, v and σ = 0, so with every component on the layer equals ``w`` exactly (in float64
        arithmetic; float32 round-off otherwise)."""
        u, s, vh = torch.linalg.svd(w.detach().to(torch.float64), full_matrices=False)
        r, k = self.rank, s.numel()
        U = torch.randn(self.d_out, r, generator=generator, dtype=torch.float64)
        V = torch.randn(r, self.d_in, generator=generator, dtype=torch.float64)
        U, V = U / U.norm(dim=0, keepdim=True), V / V.norm(dim=1, keepdim=True)
        S = torch.zeros(r, dtype=torch.float64)
        m = min(r, k)
        U[:, :m], S[:m], V[:m] = u[:, :m], s[:m], vh[:m]
        g = self.learngenes
        for p, val in ((self.u_g, U[:, :g]), (self.s_g, S[:g]), (self.v_g, V[:g]),
                       (self.u_t, U[:, g:]), (self.s_t, S[g:]), (self.v_t, V[g:])):
            p.copy_(val.to(p.dtype))

    @torch.no_grad()
    def reset_tailors(self, scale: float, generator: torch.Generator | None = None) -> None:
        """Fresh tailors for a diversion: random unit u, v and σ = ``scale`` · min(σ_learngene)."""
        rt = self.u_t.shape[1]
        u = torch.randn(self.d_out, rt, generator=generator)
        v = torch.randn(rt, self.d_in, generator=generator)
        self.u_t.copy_(u / u.norm(dim=0, keepdim=True))
        self.v_t.copy_(v / v.norm(dim=1, keepdim=True))
        base = float(self.s_g.abs().min()) if self.learngenes else 1.0
        self.s_t.fill_(scale * base)


class KindLinear(_KindBase):
    """A Linear layer in KIND form (see the module docstring).

    Args:
        d_in: input features.
        d_out: output features.
        learngenes: shared components.
        tailors: components per class.
        num_classes: K (the gate has K + 1 rows; row K is learngenes only).
        bias: add a (shared) bias.

    Examples:
        >>> lin = nn.Linear(6, 4)
        >>> k = KindLinear.from_dense(lin, learngenes=2, tailors=1, num_classes=2)
        >>> x = torch.randn(3, 6)
        >>> torch.allclose(k(x), lin(x), atol=1e-5)
        True
    """

    def __init__(self, d_in: int, d_out: int, learngenes: int, tailors: int = 0,
                 num_classes: int = 0, bias: bool = True) -> None:
        super().__init__()
        self._init_kind(d_out, d_in, learngenes, tailors, num_classes, bias)
        self.init_from_matrix(nn.Linear(d_in, d_out).weight)  # PyTorch's default init, factored

    @classmethod
    def from_dense(cls, layer: nn.Linear, learngenes: int, tailors: int = 0,
                   num_classes: int = 0) -> KindLinear:
        """A KIND layer equal to ``layer`` with every component on (its SVD, zero-padded)."""
        k = cls(layer.in_features, layer.out_features, learngenes, tailors, num_classes,
                layer.bias is not None)
        k.init_from_matrix(layer.weight)
        if layer.bias is not None:
            with torch.no_grad():
                k.bias.copy_(layer.bias)
        return k

    def dense_weight(self, y: int | None = None) -> Tensor:
        """W_y (out, in) for class ``y`` (None: every component on)."""
        return self.dense_matrix(y)

    def forward(self, x: Tensor) -> Tensor:
        u, _, v = self.factors()
        h = F.linear(x, v) * self.scales(x.shape[0]).view(x.shape[0], *[1] * (x.dim() - 2), -1)
        return F.linear(h, u, self.bias)


class KindConv2d(_KindBase):
    """A Conv2d in KIND form: V = k×k conv (in → r), gate ⊙ σ per sample, U = 1×1 conv (r → out).

    Args:
        c_in: input channels.
        c_out: output channels.
        kernel_size: square kernel side.
        stride: the conv's stride.
        padding: the conv's padding.
        learngenes: shared components.
        tailors: components per class.
        num_classes: K.
        bias: add a (shared) bias.

    Examples:
        >>> conv = nn.Conv2d(2, 4, 3, padding=1)
        >>> k = KindConv2d.from_dense(conv, learngenes=2, tailors=1, num_classes=2)
        >>> x = torch.randn(1, 2, 5, 5)
        >>> torch.allclose(k(x), conv(x), atol=1e-5)
        True
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, learngenes: int = 8, tailors: int = 0,
                 num_classes: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.c_in, self.kernel_size, self.stride, self.padding = c_in, kernel_size, stride, padding
        self._init_kind(c_out, c_in * kernel_size * kernel_size, learngenes, tailors,
                        num_classes, bias)
        self.init_from_matrix(  # PyTorch's default init, factored
            nn.Conv2d(c_in, c_out, kernel_size).weight.reshape(c_out, -1))

    @classmethod
    def from_dense(cls, layer: nn.Conv2d, learngenes: int, tailors: int = 0,
                   num_classes: int = 0) -> KindConv2d:
        """A KIND conv equal to ``layer`` (square kernel, groups 1) with every component on."""
        if layer.groups != 1 or layer.kernel_size[0] != layer.kernel_size[1]:
            raise ConfigError("KindConv2d.from_dense: needs groups=1 and a square kernel")
        k = cls(layer.in_channels, layer.out_channels, layer.kernel_size[0], layer.stride[0],
                layer.padding[0], learngenes, tailors, num_classes, layer.bias is not None)
        k.init_from_matrix(layer.weight.reshape(layer.out_channels, -1))
        if layer.bias is not None:
            with torch.no_grad():
                k.bias.copy_(layer.bias)
        return k

    def dense_weight(self, y: int | None = None) -> Tensor:
        """W_y as a conv kernel (out, in, k, k) for class ``y`` (None: every component on)."""
        ks = self.kernel_size
        return self.dense_matrix(y).reshape(self.d_out, self.c_in, ks, ks)

    def forward(self, x: Tensor) -> Tensor:
        u, _, v = self.factors()
        ks = self.kernel_size
        h = F.conv2d(x, v.reshape(-1, self.c_in, ks, ks), stride=self.stride, padding=self.padding)
        h = h * self.scales(x.shape[0])[:, :, None, None]
        return F.conv2d(h, u[:, :, None, None], self.bias)


def kind_layers(model: nn.Module) -> list[_KindBase]:
    """Every KIND layer of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, _KindBase)]


def set_labels(model: nn.Module, labels: Tensor | None) -> None:
    """Route the classes (B,) in [0, K] — or None for every component — to every KIND layer."""
    for m in kind_layers(model):
        m.labels = labels
