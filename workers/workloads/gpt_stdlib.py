"""gpt-stdlib: a small decoder-only transformer trained as a byte-level language model on the Python
standard library's own source files: real text on every machine, read from the running interpreter.

The corpus: every ``.py`` file under ``sysconfig.get_paths()["stdlib"]``, except those under a
folder named ``test``, ``tests``, ``idle_test``, ``site-packages`` or ``__pycache__``, sorted by
their path relative to that folder. The split is by file: every tenth file of that list (the
10th, 20th, ...) is validation, the rest training. Nothing is downloaded, and nothing is held as
one tensor: each pass reads the training files in a seeded order, cuts each into windows of
``CONTEXT + 1`` bytes at a seeded offset and shuffles them in pools of a few thousand windows.
Validation is a fixed set of windows taken evenly from the validation files.

It reports ``val_loss`` (nats per byte) and ``val_bpb`` (bits per byte).
"""

from __future__ import annotations

import math
import sysconfig
from collections.abc import Generator, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lrsearch.workers.workloads.base import Mode, Precision, Workload

CONTEXT = 64  # bytes a prediction sees
WINDOW = CONTEXT + 1  # inputs and the next byte of each
SKIPPED_FOLDERS = frozenset({"test", "tests", "idle_test", "site-packages", "__pycache__"})
VALIDATION_EVERY = 10  # every tenth file is validation
VALIDATION_WINDOWS = 512  # 33 kB of validation text
POOL_WINDOWS = 4096  # windows shuffled together (about 260 kB of text)


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The corpus's files, in their fixed order (see the module's doc)."""
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else root
    found = [p for p in root.rglob("*.py")
             if not SKIPPED_FOLDERS.intersection(p.relative_to(root).parts[:-1]) and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def split_files(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(training files, validation files): every tenth file is validation."""
    val = [f for i, f in enumerate(files) if i % VALIDATION_EVERY == VALIDATION_EVERY - 1]
    train = [f for i, f in enumerate(files) if i % VALIDATION_EVERY != VALIDATION_EVERY - 1]
    return train, val


class ByteWindowStream:
    """One pass over the training files per iteration, in batches of ``batch_size`` windows
    (uint8, shape ``(batch, WINDOW)``). Draws from torch's global RNG, which lrsearch seeds before
    each pass: the file order, each file's offset and the shuffle of each pool."""

    def __init__(self, files: list[Path], sizes: list[int], batch_size: int) -> None:
        self.files, self.sizes, self.batch_size = files, sizes, batch_size

    def __len__(self) -> int:
        windows = sum(size // WINDOW for size in self.sizes)
        return math.ceil(windows / self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        pool: list[Tensor] = []
        pooled = 0
        for index in torch.randperm(len(self.files)).tolist():
            data = self.files[index].read_bytes()
            spare = len(data) % WINDOW  # the offset keeps the window count fixed per file
            offset = int(torch.randint(0, spare + 1, ()))
            count = (len(data) - offset) // WINDOW
            if count == 0:
                continue
            chunk = torch.frombuffer(bytearray(data[offset:offset + count * WINDOW]), dtype=torch.uint8)
            pool.append(chunk.view(count, WINDOW))
            pooled += count
            if pooled >= POOL_WINDOWS:
                leftover = yield from self._emit(torch.cat(pool), final=False)
                pool, pooled = [leftover], len(leftover)
        if pooled:
            yield from self._emit(torch.cat(pool), final=True)

    def _emit(self, windows: Tensor, final: bool) -> Generator[Tensor, None, Tensor]:
        """Shuffled full batches of ``windows``; the rest is returned (or yielded, at the end)."""
        windows = windows[torch.randperm(len(windows))]
        full = len(windows) - len(windows) % self.batch_size
        for start in range(0, full, self.batch_size):
            yield windows[start:start + self.batch_size]
        if final and full < len(windows):
            yield windows[full:]
            return windows[:0]
        return windows[full:]


class ByteGPT(nn.Module):
    """A pre-norm decoder-only transformer over bytes: token and learned position embeddings,
    ``torch.nn.TransformerEncoder`` layers under a causal mask, a final norm and a linear head."""

    mask: Tensor  # a buffer (register_buffer)

    def __init__(self, context: int = CONTEXT, width: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, width)
        self.position = nn.Parameter(torch.randn(context, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 256)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context), persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:
        length = tokens.shape[1]
        hidden = self.embed(tokens) + self.position[:length]
        hidden = self.blocks(hidden, mask=self.mask[:length, :length], is_causal=True)
        return self.head(self.norm(hidden))


def next_byte_loss(model: nn.Module, batch: Tensor) -> Tensor:
    """Mean cross-entropy (nats) of predicting each window's bytes from those before them."""
    tokens = batch.long()
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tokens[:, 1:].reshape(-1))


class GPTStdlib(Workload):
    name = "gpt-stdlib"
    description = ("Byte-level decoder-only transformer (2 layers, width 64, 4 heads, context 64) on the "
                   "Python standard library's own source text, streamed from disk; reports val_loss "
                   "(nats/byte) and val_bpb (bits/byte). For step jobs.")
    batch_size = 32
    eval_batch_size = 256
    metrics: ClassVar[Mapping[str, Mode]] = {"val_loss": "min", "val_bpb": "min"}
    grad_clip_norm = 1.0
    precision: ClassVar[Precision] = "bf16"

    @cached_property
    def _split(self) -> tuple[list[Path], list[Path]]:
        files = stdlib_files()
        if len(files) < VALIDATION_EVERY:
            raise RuntimeError(f"found only {len(files)} standard-library source files under "
                               f"{sysconfig.get_paths()['stdlib']}")
        return split_files(files)

    @cached_property
    def _validation(self) -> Tensor:
        """VALIDATION_WINDOWS windows, taken evenly from the validation files (fixed)."""
        _, files = self._split
        per_file = math.ceil(VALIDATION_WINDOWS / len(files))
        windows: list[Tensor] = []
        for path in files:
            data = path.read_bytes()
            count = len(data) // WINDOW
            if count == 0:
                continue
            whole = torch.frombuffer(bytearray(data[:count * WINDOW]), dtype=torch.uint8).view(count, WINDOW)
            step = max(1, count // per_file)
            windows.append(whole[::step][:per_file])
        return torch.cat(windows)[:VALIDATION_WINDOWS].clone()

    def build_model(self, seed: int) -> nn.Module:
        return ByteGPT()

    def train_batches(self, batch_size: int) -> ByteWindowStream:
        files, _ = self._split
        return ByteWindowStream(files, [f.stat().st_size for f in files], batch_size)

    def val_batches(self, batch_size: int) -> list[Tensor]:
        return list(self._validation.split(batch_size))

    def training_step(self, model: nn.Module, batch: Any) -> Tensor:
        return next_byte_loss(model, batch)

    def validation_step(self, model: nn.Module, batch: Any) -> dict[str, float | Tensor]:
        loss = next_byte_loss(model, batch)
        return {"val_loss": loss, "val_bpb": loss / math.log(2)}
