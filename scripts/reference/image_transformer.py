#!/usr/bin/env python3
"""A small PyTorch reference of the Image Transformer's local 1-D decoder (Parmar et al. 2018), written from
tensor2tensor's code (each part names the t2t function it follows), and the fixtures SwiftViT's parity tests read.

    python3 scripts/reference/image_transformer.py Tests/GenerationTests/Fixtures

There is no maintained PyTorch implementation to take fixtures from; this one follows t2t's `imagetransformer_*`
hparams with `dec_attention_type = local_1d`, `layer_preprocess_sequence = "none"`, `layer_postprocess_sequence =
"dan"` (imagetransformer_cifar10_base). Where the paper and the code differ, the code is followed:
- the sequence is shifted right by one sub-pixel *before* the timing signal is added (prepare_decoder), and the
  timing signal is 2-D over (rows, columns x channels) (add_timing_signal_nd on [B, H, W*C, d]), not 1-D;
- a dropout at rate layer_prepostprocess_dropout is applied to the decoder input (transformer_decoder_layers);
- the class embedding (class_label_bottom, scaled by sqrt(d) as multiply_embedding_mode = "sqrt_depth") is added to
  every position after the timing signal (Imagetransformer.body);
- the last block's output is not normalised again (layer_preprocess with sequence "none").
"""
import json, math, os, sys

import torch
from safetensors.torch import save_file


def timing_signal_nd(x, min_timescale=1.0, max_timescale=1.0e4):
    """common_attention.add_timing_signal_nd for x [B, d1, ..., dn, C]."""
    num_dims = x.dim() - 2
    channels = x.shape[-1]
    num_timescales = channels // (num_dims * 2)
    log_increment = math.log(max_timescale / min_timescale) / (num_timescales - 1)
    inv = min_timescale * torch.exp(torch.arange(num_timescales, dtype=torch.float64) * -log_increment)
    for dim in range(num_dims):
        length = x.shape[dim + 1]
        scaled = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]
        signal = torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)
        signal = torch.nn.functional.pad(signal, (dim * 2 * num_timescales, channels - (dim + 1) * 2 * num_timescales))
        shape = [1] * (dim + 1) + [length] + [1] * (num_dims - 1 - dim) + [channels]
        x = x + signal.reshape(shape).to(x.dtype)
    return x


def masked_local_attention_1d(q, k, v, block_length):
    """common_attention.masked_local_attention_1d: q, k, v [B, heads, L, dk] (q already scaled)."""
    b, h, length, dk = q.shape
    block_length = length if length < 2 * block_length else block_length
    original = length
    pad = (-length) % block_length
    q, k, v = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    length += pad
    blocks = length // block_length
    # The first query block: causal attention within itself (attention_bias_lower_triangle).
    causal = torch.triu(torch.full((block_length, block_length), -1e9, dtype=q.dtype), diagonal=1)
    first = torch.softmax(q[:, :, :block_length] @ k[:, :, :block_length].transpose(-1, -2) + causal, dim=-1) @ v[:, :, :block_length]
    outputs = [first]
    if blocks > 1:
        qb = q.reshape(b, h, blocks, block_length, dk)
        kb = k.reshape(b, h, blocks, block_length, dk)
        vb = v.reshape(b, h, blocks, block_length, v.shape[-1])
        # _make_local_block: each block beside the block before it.
        local_k = torch.cat([kb[:, :, :-1], kb[:, :, 1:]], dim=3)
        local_v = torch.cat([vb[:, :, :-1], vb[:, :, 1:]], dim=3)
        # ones_matrix_band_part(block_length, 2 block_length, -1, block_length): memory j <= query i + block_length.
        i = torch.arange(block_length)[:, None]
        j = torch.arange(2 * block_length)[None, :]
        bias = torch.where(j - i <= block_length, 0.0, -1e9).to(q.dtype)
        tail = torch.softmax(qb[:, :, 1:] @ local_k.transpose(-1, -2) + bias, dim=-1) @ local_v
        outputs.append(tail.reshape(b, h, (blocks - 1) * block_length, -1))
    return torch.cat(outputs, dim=2)[:, :, :original]


def block_indices(rows, cols, block, stride):
    """gather_indices_2d: for each block of shape `block` at `stride` (VALID), its flat indices in a rows x cols grid,
    row-major within the block; blocks in raster order."""
    out = []
    for top in range(0, rows - block[0] + 1, stride[0]):
        for left in range(0, cols - block[1] + 1, stride[1]):
            out.append([(top + r) * cols + left + c for r in range(block[0]) for c in range(block[1])])
    return torch.tensor(out)


def pad_to_multiple_2d(x, shape):
    """x [B, h, H, W, d] zero-padded at the bottom and right to multiples of shape."""
    rows, cols = x.shape[2], x.shape[3]
    return torch.nn.functional.pad(x, (0, 0, 0, (-cols) % shape[1], 0, (-rows) % shape[0]))


def gather_blocks_2d(x, indices):
    """[B, h, H, W, d] -> [B, h, blocks, block size, d]."""
    b, h, rows, cols, d = x.shape
    return x.reshape(b, h, rows * cols, d)[:, :, indices]


def masked_local_attention_2d(q, k, v, query_shape, memory_flange):
    """common_attention.masked_local_attention_2d: q, k, v [B, heads, H, W, dk] (q already scaled). Each query block
    sees its own block causally (raster order inside the block), and the memory flange: fh rows above it from fw
    columns left of it to fw right of it, and fw columns to its left (get_memory_region). Flange positions whose key is
    all zeros (padding: outside the image) are masked (embedding_to_padding); padded positions of the query block are
    not (their keys and values are zero, so they only add exp(0) to a softmax's denominator, as in t2t)."""
    b, h, rows, cols, dk = v.shape
    (qh, qw), (fh, fw) = query_shape, memory_flange
    q, k, v = (pad_to_multiple_2d(t, query_shape) for t in (q, k, v))
    prow, pcol = q.shape[2], q.shape[3]
    q_indices = block_indices(prow, pcol, query_shape, query_shape)
    q_blocks = gather_blocks_2d(q, q_indices)

    def memory(x):  # get_memory_region
        center = gather_blocks_2d(x, q_indices)
        padded = torch.nn.functional.pad(x, (0, 0, fw, fw, fh, 0))
        parts = []
        if fh > 0:
            top = padded[:, :, :-qh]
            parts.append(gather_blocks_2d(top, block_indices(top.shape[2], top.shape[3], (fh, qw + 2 * fw), query_shape)))
        if fw > 0:
            left = padded[:, :, fh:, :-(qw + fw)]
            parts.append(gather_blocks_2d(left, block_indices(left.shape[2], left.shape[3], (qh, fw), query_shape)))
        return (torch.cat(parts, dim=3) if parts else None), center

    k_flange, k_center = memory(k)
    v_flange, v_center = memory(v)
    queries = qh * qw
    center_bias = torch.triu(torch.full((queries, queries), -1e9, dtype=q.dtype), diagonal=1)
    if k_flange is not None:
        keys, values = torch.cat([k_flange, k_center], dim=3), torch.cat([v_flange, v_center], dim=3)
        padding = (k_flange.abs().sum(-1) == 0).to(q.dtype) * -1e9  # [B, h, blocks, flange]
        bias = torch.cat([padding[:, :, :, None, :].expand(-1, -1, -1, queries, -1),
                          center_bias.expand(b, h, q_blocks.shape[2], queries, queries)], dim=4)
    else:
        keys, values, bias = k_center, v_center, center_bias
    out = torch.softmax(q_blocks @ keys.transpose(-1, -2) + bias, dim=-1) @ values  # [B, h, blocks, Q, dk]
    scattered = torch.zeros(b, h, prow * pcol, dk, dtype=q.dtype)  # scatter_blocks_2d
    scattered[:, :, q_indices.reshape(-1)] = out.reshape(b, h, -1, dk)
    return scattered.reshape(b, h, prow, pcol, dk)[:, :, :rows, :cols]


def right_shift_blockwise(x, query_shape):
    """common_attention.right_shift_blockwise: x [B, H, W, d]; inside each query block (raster order) every position
    takes the one before it, the first takes zeros."""
    b, rows, cols, d = x.shape
    padded = pad_to_multiple_2d(x[:, None], query_shape)
    prow, pcol = padded.shape[2], padded.shape[3]
    indices = block_indices(prow, pcol, query_shape, query_shape)
    blocks = gather_blocks_2d(padded, indices)
    shifted = torch.nn.functional.pad(blocks, (0, 0, 1, 0))[:, :, :, :-1]
    scattered = torch.zeros(b, 1, prow * pcol, d, dtype=x.dtype)
    scattered[:, :, indices.reshape(-1)] = shifted.reshape(b, 1, -1, d)
    return scattered.reshape(b, prow, pcol, d)[:, :rows, :cols]


class ImageTransformer1D(torch.nn.Module):
    def __init__(self, channels, width, depth, heads, ffn, block_length, classes, dropout=0.0, query_shape=None,
                 memory_flange=None):
        super().__init__()
        self.channels, self.width, self.heads, self.block_length, self.dropout = channels, width, heads, block_length, dropout
        # dec_attention_type local_2d (image_transformer_2d's layout in image_transformer's decoder) when given.
        self.query_shape, self.memory_flange = query_shape, memory_flange
        self.channel_embedding = torch.nn.Parameter(torch.randn(256 * channels, width) * 0.3)  # get_channel_embeddings
        self.class_embedding = torch.nn.Parameter(torch.randn(classes, width) * 0.3) if classes else None
        self.layers = torch.nn.ModuleList()
        for _ in range(depth):
            layer = torch.nn.Module()
            layer.attention = torch.nn.Module()
            for name in ("query", "key", "value", "output"):  # compute_qkv / output_transform: no biases
                setattr(layer.attention, name, torch.nn.Linear(width, width, bias=False))
            layer.attention_norm = torch.nn.LayerNorm(width, eps=1e-6)
            layer.ffn = torch.nn.Module()
            layer.ffn.fc1 = torch.nn.Linear(width, ffn)  # dense_relu_dense: both with biases
            layer.ffn.fc2 = torch.nn.Linear(ffn, width)
            layer.ffn_norm = torch.nn.LayerNorm(width, eps=1e-6)
            for norm in (layer.attention_norm, layer.ffn_norm):  # away from 1 and 0, so their gradients are tested
                torch.nn.init.normal_(norm.weight, 1.0, 0.2)
                torch.nn.init.normal_(norm.bias, 0.0, 0.2)
            self.layers.append(layer)
        self.output = torch.nn.Linear(width, 256)  # postprocess_image: output_conv with a bias

    def forward(self, images, labels=None):
        """images: integer sub-pixels [B, H, W, C]; returns logits [B, H*W*C, 256]."""
        b, rows, cols, channels = images.shape
        d = self.width
        ids = images + 256 * torch.arange(channels)  # get_channel_embeddings: offset 256 x channel
        x = (self.channel_embedding * d ** 0.5)[ids]  # [B, H, W, C, d]
        if self.query_shape:  # prepare_decoder, local_2d: right_shift_blockwise
            x = right_shift_blockwise(x.reshape(b, rows, cols * channels, d), self.query_shape)
        else:
            x = x.reshape(b, rows * cols * channels, d)
            x = torch.nn.functional.pad(x, (0, 0, 1, 0))[:, :-1]  # shift_right_3d
        x = timing_signal_nd(x.reshape(b, rows, cols * channels, d)).reshape(b, -1, d)  # add_pos_signals
        if self.class_embedding is not None:
            x = x + (self.class_embedding * d ** 0.5)[labels][:, None, :]
        x = torch.nn.functional.dropout(x, self.dropout, self.training)
        for layer in self.layers:
            a = layer.attention
            dk = d // self.heads

            def split(t):
                return t.reshape(b, -1, self.heads, dk).transpose(1, 2)

            q = split(a.query(x)) * dk ** -0.5
            if self.query_shape:  # multihead_attention_2d over [B, H, W*C, d]
                def grid(t):
                    return t.reshape(b, self.heads, rows, cols * channels, dk)
                y = masked_local_attention_2d(grid(q), grid(split(a.key(x))), grid(split(a.value(x))), self.query_shape,
                                              self.memory_flange).reshape(b, self.heads, -1, dk)
            else:
                y = masked_local_attention_1d(q, split(a.key(x)), split(a.value(x)), self.block_length)
            y = a.output(y.transpose(1, 2).reshape(b, -1, d))
            x = layer.attention_norm(x + torch.nn.functional.dropout(y, self.dropout, self.training))  # "dan"
            y = layer.ffn.fc2(torch.relu(layer.ffn.fc1(x)))
            x = layer.ffn_norm(x + torch.nn.functional.dropout(y, self.dropout, self.training))
        return self.output(x)


def fixture(folder, name, *, rows, cols, channels, width, depth, heads, ffn, block_length, classes, batch, seed,
            query_shape=None, memory_flange=None):
    torch.manual_seed(seed)
    model = ImageTransformer1D(channels, width, depth, heads, ffn, block_length, classes, query_shape=query_shape,
                               memory_flange=memory_flange).double()
    images = torch.randint(0, 256, (batch, rows, cols, channels))
    labels = torch.randint(0, classes, (batch,)) if classes else None
    logits = model(images, labels)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), images.reshape(-1))
    loss.backward()
    tensors = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    tensors.update({"grad." + k: p.grad.float().contiguous() for k, p in model.named_parameters()})
    tensors["images"] = images.float()
    if labels is not None:
        tensors["labels"] = labels.float()
    tensors["logits"] = logits.detach().float().contiguous()
    save_file(tensors, os.path.join(folder, f"{name}.safetensors"))
    config = dict(rows=rows, cols=cols, channels=channels, width=width, depth=depth, heads=heads, ffn=ffn,
                  block_length=block_length, classes=classes, loss_nats=loss.item(),
                  query_shape=list(query_shape) if query_shape else None,
                  memory_flange=list(memory_flange) if memory_flange else None,
                  bits_per_dim=loss.item() / math.log(2), torch=torch.__version__)
    json.dump(config, open(os.path.join(folder, f"{name}.json"), "w"), indent=1)
    print(name, config)


def self_checks():
    """The blocked attention equals dense attention under its band mask, and no logit sees its own sub-pixel or later."""
    torch.manual_seed(0)
    for length, block in [(48, 8), (27, 8), (10, 8)]:
        q, k, v = (torch.randn(2, 3, length, 4, dtype=torch.float64) for _ in range(3))
        p = torch.arange(length)[:, None]
        j = torch.arange(length)[None, :]
        b = length if length < 2 * block else block
        allowed = (j <= p) & (j >= (p // b - 1) * b)
        dense = torch.softmax(q @ k.transpose(-1, -2) + torch.where(allowed, 0.0, -1e9), dim=-1) @ v
        assert torch.allclose(masked_local_attention_1d(q, k, v, block), dense, atol=1e-12), (length, block)
    model = ImageTransformer1D(3, 16, 2, 2, 32, 8, 0).double().eval()
    images = torch.randint(0, 256, (1, 4, 4, 3))
    base = model(images)
    for position in [0, 7, 8, 20, 47]:
        changed = images.clone().reshape(-1)
        changed[position] = (changed[position] + 128) % 256
        out = model(changed.reshape(1, 4, 4, 3))
        assert torch.equal(out[:, :position + 1], base[:, :position + 1]), position
        if position < 47:
            assert not torch.equal(out[:, position + 1], base[:, position + 1]), position
    # Local 2-D: in block raster order (query blocks in raster order, raster inside each), no logit sees its own
    # sub-pixel or a later one.
    model = ImageTransformer1D(3, 16, 2, 2, 32, 8, 0, query_shape=(2, 4), memory_flange=(2, 3)).double().eval()
    images = torch.randint(0, 256, (1, 6, 6, 3))
    base = model(images)
    order = block_raster_order(6, 18, (2, 4))
    rank = {position: i for i, position in enumerate(order)}
    for position in [0, 3, 5, 17, 40, 77, 107]:
        changed = images.clone().reshape(-1)
        changed[position] = (changed[position] + 128) % 256
        out = model(changed.reshape(1, 6, 6, 3))
        for other in range(108):
            if rank[other] <= rank[position]:
                assert torch.equal(out[0, other], base[0, other]), (position, other)


def block_raster_order(rows, cols, query_shape):
    """The positions of a rows x cols grid in block raster order (the padded positions left out)."""
    qh, qw = query_shape
    prow, pcol = rows + (-rows) % qh, cols + (-cols) % qw
    return [p // pcol * cols + p % pcol for block in block_indices(prow, pcol, query_shape, query_shape).tolist()
            for p in block if p // pcol < rows and p % pcol < cols]


if __name__ == "__main__":
    self_checks()
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    # 48 sub-pixels in blocks of 8 (six blocks), class-conditional; and 25 in blocks of 8 (padded to 32), grey.
    fixture(folder, "image-transformer-rgb-4x4-b8-cond", rows=4, cols=4, channels=3, width=16, depth=2, heads=2, ffn=32,
            block_length=8, classes=3, batch=2, seed=1)
    fixture(folder, "image-transformer-grey-5x5-b8", rows=5, cols=5, channels=1, width=16, depth=2, heads=4, ffn=24,
            block_length=8, classes=0, batch=3, seed=2)
    # Local 2-D attention on a 6 x (6 x 3) grid in query blocks of 2 x 4 (the width padded to 20) with a flange of
    # 2 rows and 3 columns; and a grey 5 x 5 in blocks of 2 x 2 (padded to 6 x 6), flange 1 x 2, conditional.
    fixture(folder, "image-transformer-2d-rgb-6x6-q2x4-f2x3", rows=6, cols=6, channels=3, width=16, depth=2, heads=2,
            ffn=32, block_length=8, classes=0, batch=2, seed=3, query_shape=(2, 4), memory_flange=(2, 3))
    fixture(folder, "image-transformer-2d-grey-5x5-q2x2-f1x2-cond", rows=5, cols=5, channels=1, width=16, depth=2,
            heads=2, ffn=24, block_length=8, classes=2, batch=2, seed=4, query_shape=(2, 2), memory_flange=(1, 2))
