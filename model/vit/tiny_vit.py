"""A tiny Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR
2021) sized for a small FPGA: pre-norm blocks of multi-head self-attention and a GELU
MLP, a class token, learned position embeddings and a linear head.

Every matrix product with weights is an `nn.Linear` with a stable name (`patch_embed`,
`blocks.<i>.qkv`, `blocks.<i>.proj`, `blocks.<i>.fc1`, `blocks.<i>.fc2`, `head`), so a
compression plan (model/vit/compression_plan.py) can swap each one for a LUTLinear, a shift
or a butterfly layer. `forward(x, record=...)` also hands out the tensor at every point
the integer model (the whole-model config of model/vit/export.py) quantizes, under the names of its config layers,
which is how activation scales are calibrated.
"""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nomac.base.errors import NomacError

__all__ = ["ViTShape", "image_patches", "QuantPoints", "UNQUANTIZED", "fake_quantize", "Block", "TinyViT"]


@dataclass(frozen=True)
class ViTShape:
    """The architecture: image height/width, patch side, embedding dim, blocks, heads, MLP width."""
    height: int = 8
    width: int = 8
    patch: int = 2
    dim: int = 32
    depth: int = 2
    heads: int = 4
    mlp: int = 64
    classes: int = 10

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise NomacError(f"ViTShape: {name} = {value!r}: must be a positive integer")
        if self.height % self.patch or self.width % self.patch:
            raise NomacError(f"ViTShape: patch = {self.patch}: must divide height {self.height} and width {self.width}")
        if self.dim % self.heads:
            raise NomacError(f"ViTShape: heads = {self.heads}: must divide dim {self.dim}")

    @property
    def patches(self) -> int:
        return (self.height // self.patch) * (self.width // self.patch)

    @property
    def tokens(self) -> int:
        return self.patches + 1            # the class token first

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def patch_len(self) -> int:
        return self.patch * self.patch

    def linear_names(self) -> list[str]:
        """Every nn.Linear of the model, in forward order."""
        return list(self.linear_points())

    def residual_points(self) -> list[str]:
        """The residual stream after each attention and each MLP half-block."""
        return [f"b{i}_{add}" for i in range(self.depth) for add in ("add1", "add2")]

    def linear_points(self) -> dict[str, tuple[str, str]]:
        """Linear name -> (recorded tensor it reads, recorded tensor it writes); the written
        one is also the name of its layer in the integer model's config."""
        points = {"patch_embed": ("patches", "patch_embed")}
        for i in range(self.depth):
            reads = {"qkv": f"b{i}_ln1", "proj": f"b{i}_attn", "fc1": f"b{i}_ln2", "fc2": f"b{i}_gelu"}
            points.update({f"blocks.{i}.{part}": (read, f"b{i}_{part}") for part, read in reads.items()})
        points["head"] = ("norm", "head")
        return points


def image_patches(x: torch.Tensor, shape: ViTShape) -> torch.Tensor:
    """[N, H*W] row-major images -> [N, P, patch*patch], patches in row-major order and
    pixels row-major inside a patch."""
    p = shape.patch
    rows, cols = shape.height // p, shape.width // p
    x = x.reshape(-1, rows, p, cols, p).permute(0, 1, 3, 2, 4)
    return x.reshape(-1, rows * cols, p * p)


class QuantPoints:
    """Where the integer model quantizes: records each tensor (if `record` is a dict) and,
    with `scales`, rounds it to its int8 grid in the forward pass (fake quantization with
    a straight-through gradient), so that training sees the integer model's rounding."""

    def __init__(self, record: dict | None = None, scales: dict | None = None, emulation=None):
        self.record, self.scales, self.emulation = record, scales, emulation
        self.values = {}

    def __call__(self, name: str, value: torch.Tensor, kind: str = "input", sources=(), module=None) -> torch.Tensor:
        """`kind` (matrix, layernorm, embed, attention, gelu, add, select, input), the names of
        the points it reads and its module say which integer layer computes this point."""
        exact = None
        if self.emulation is not None:
            exact = self.emulation(name, kind, value, [self.values[n] for n in sources], sources, module)
        if exact is not None:
            value = value + (exact - value).detach()
        elif self.scales is not None and name in self.scales and name not in UNQUANTIZED:
            scale = self.emulation.scale_of(name) if self.emulation is not None else self.scales[name]
            value = fake_quantize(value, scale)
        self.values[name] = value
        if self.record is not None:
            self.record[name] = value
        return value

    def probabilities(self, p: torch.Tensor) -> torch.Tensor:
        """Softmax outputs as the integer attention has them: units of 2^-8, at most 255."""
        if self.scales is None:
            return p
        return p + (torch.clamp(torch.floor(p * 256 + 0.5), 0, 255) / 256 - p).detach()


UNQUANTIZED = ("head",)     # the raw logits (accumulators)


def fake_quantize(value: torch.Tensor, scale: float) -> torch.Tensor:
    """clamp(round_half_up(v / s), -128, 127) * s in the forward pass, identity gradient."""
    quantized = torch.clamp(torch.floor(value / scale + 0.5), -128, 127) * scale
    return value + (quantized - value).detach()


class Block(nn.Module):
    """x + proj(attention(norm1(x))), then x + fc2(gelu(fc1(norm2(x)))) (pre-norm)."""

    def __init__(self, shape: ViTShape):
        super().__init__()
        self.shape = shape
        self.norm1 = nn.LayerNorm(shape.dim)
        self.qkv = nn.Linear(shape.dim, 3 * shape.dim)
        self.proj = nn.Linear(shape.dim, shape.dim)
        self.norm2 = nn.LayerNorm(shape.dim)
        self.fc1 = nn.Linear(shape.dim, shape.mlp)
        self.fc2 = nn.Linear(shape.mlp, shape.dim)

    def forward(self, x: torch.Tensor, point: QuantPoints, prefix: str, source: str) -> torch.Tensor:
        s, p = self.shape, prefix
        h = point(f"{p}_ln1", self.norm1(x), "layernorm", (source,), self.norm1)
        qkv = point(f"{p}_qkv", self.qkv(h), "matrix", (f"{p}_ln1",), self.qkv)
        N, T, _ = qkv.shape
        q, k, v = qkv.reshape(N, T, 3, s.heads, s.head_dim).permute(2, 0, 3, 1, 4)   # [N, H, T, dh] each
        scores = q @ k.transpose(-1, -2) / math.sqrt(s.head_dim)
        probabilities = point.probabilities(scores.softmax(-1))
        context = point(f"{p}_attn", (probabilities @ v).transpose(1, 2).reshape(N, T, s.dim), "attention",
                        (f"{p}_qkv",))
        projected = point(f"{p}_proj", self.proj(context), "matrix", (f"{p}_attn",), self.proj)
        x = point(f"{p}_add1", x + projected, "add", (source, f"{p}_proj"))
        h = point(f"{p}_ln2", self.norm2(x), "layernorm", (f"{p}_add1",), self.norm2)
        h = point(f"{p}_fc1", self.fc1(h), "matrix", (f"{p}_ln2",), self.fc1)
        h = point(f"{p}_gelu", F.gelu(h), "gelu", (f"{p}_fc1",))
        h = point(f"{p}_fc2", self.fc2(h), "matrix", (f"{p}_gelu",), self.fc2)
        return point(f"{p}_add2", x + h, "add", (f"{p}_add1", f"{p}_fc2"))


class TinyViT(nn.Module):
    """Images [N, H*W] (float, the int8 pixels times the input scale) -> class logits [N, classes]."""

    def __init__(self, shape: ViTShape = ViTShape()):
        super().__init__()
        self.shape = shape
        self.patch_embed = nn.Linear(shape.patch_len, shape.dim)
        self.cls_token = nn.Parameter(torch.zeros(shape.dim))
        self.pos_embed = nn.Parameter(torch.randn(shape.tokens, shape.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.depth))
        self.norm = nn.LayerNorm(shape.dim)
        self.head = nn.Linear(shape.dim, shape.classes)
        self.activation_scales: dict | None = None    # set: quantization-aware (see QuantPoints)
        self.emulation = None                          # set: integer layers' values (integer_emulation.py)

    def forward(self, x: torch.Tensor, record: dict | None = None) -> torch.Tensor:
        """`record`, if given, receives the float tensor at every quantization point,
        keyed by the name of the integer model's layer that produces it. With
        `activation_scales` set, each of those tensors is rounded to its int8 grid."""
        s = self.shape
        point = QuantPoints(record, self.activation_scales, self.emulation)
        patches = point("patches", image_patches(x, s))
        embedded = point("patch_embed", self.patch_embed(patches), "matrix", ("patches",), self.patch_embed)
        cls = self.cls_token.expand(len(embedded), 1, s.dim)
        x = point("embed", torch.cat([cls, embedded], dim=1) + self.pos_embed, "embed", ("patch_embed",), self)
        source = "embed"
        for i, block in enumerate(self.blocks):
            x = block(x, point, f"b{i}", source)
            source = f"b{i}_add2"
        x = point("cls", x[:, 0], "select", (source,))
        x = point("norm", self.norm(x), "layernorm", ("cls",), self.norm)
        return point("head", self.head(x), "matrix", ("norm",), self.head)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

