"""Writes this folder from ../timm-vit-hybrid-r11-d64-l2-i32 (timm's hybrid ViT: ResNetV2 layers (1, 1) -> 1x1
projection -> ViT width 64, 2 blocks, 4 heads, 10 classes at 32 px): the same weights as the original JAX
R50+ViT npz names and lays them out (vision_transformer's models_resnet.py / models_vit.py: conv_root, gn_root,
block<s>/unit<b>/conv1..3|gn1..3|conv_proj|gn_proj, HWIO kernels, [D, heads, head_dim] attention kernels), checked
by reading it back with timm's own JAX loader (timm.models.vision_transformer._load_weights: every tensor equal), and
reference.safetensors with the logits of timm's model on the fixture's input, once as timm computes them
(StdConv2dSame, eps 1e-8 inside the square root) and once with the JAX StdConv's standardisation
((w - mean) / (std + 1e-5)), which is what the npz's own code computes. Run from this folder (torch, timm, numpy)."""
import json
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from timm.layers import StdConv2dSame
from timm.models.vision_transformer import VisionTransformer, _load_weights
from timm.models.vision_transformer_hybrid import HybridEmbed, _resnetv2

source = "../timm-vit-hybrid-r11-d64-l2-i32/"
def build():
    return VisionTransformer(img_size=32, patch_size=1, embed_dim=64, depth=2, num_heads=4, num_classes=10,
                             embed_layer=partial(HybridEmbed, backbone=_resnetv2(layers=(1, 1)))).eval()
model = build()
model.load_state_dict(load_file(source + "model.safetensors"))
sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
heads, d = 4, 64

def hwio(w): return np.ascontiguousarray(w.transpose(2, 3, 1, 0))  # [O, I, kH, kW] -> [kH, kW, I, O]
def dense(w): return np.ascontiguousarray(w.T)  # [out, in] -> [in, out]
npz = {}
bb = "patch_embed.backbone."
npz["conv_root/kernel"] = hwio(sd[bb + "stem.conv.weight"])
npz["gn_root/scale"], npz["gn_root/bias"] = sd[bb + "stem.norm.weight"], sd[bb + "stem.norm.bias"]
for s in range(2):
    p = f"{bb}stages.{s}.blocks.0."
    q = f"block{s + 1}/unit1/"
    for r in range(1, 4):
        npz[f"{q}conv{r}/kernel"] = hwio(sd[f"{p}conv{r}.weight"])
        npz[f"{q}gn{r}/scale"], npz[f"{q}gn{r}/bias"] = sd[f"{p}norm{r}.weight"], sd[f"{p}norm{r}.bias"]
    if p + "downsample.conv.weight" in sd:
        npz[f"{q}conv_proj/kernel"] = hwio(sd[p + "downsample.conv.weight"])
        npz[f"{q}gn_proj/scale"], npz[f"{q}gn_proj/bias"] = sd[p + "downsample.norm.weight"], sd[p + "downsample.norm.bias"]
npz["embedding/kernel"] = hwio(sd["patch_embed.proj.weight"])
npz["embedding/bias"] = sd["patch_embed.proj.bias"]
npz["cls"] = sd["cls_token"]
npz["Transformer/posembed_input/pos_embedding"] = sd["pos_embed"]
npz["Transformer/encoder_norm/scale"], npz["Transformer/encoder_norm/bias"] = sd["norm.weight"], sd["norm.bias"]
npz["head/kernel"], npz["head/bias"] = dense(sd["head.weight"]), sd["head.bias"]
for i in range(2):
    b, t = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
    npz[t + "LayerNorm_0/scale"], npz[t + "LayerNorm_0/bias"] = sd[b + "norm1.weight"], sd[b + "norm1.bias"]
    npz[t + "LayerNorm_2/scale"], npz[t + "LayerNorm_2/bias"] = sd[b + "norm2.weight"], sd[b + "norm2.bias"]
    qkv_w, qkv_b = sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]
    for k, name in enumerate(["query", "key", "value"]):
        a = t + f"MultiHeadDotProductAttention_1/{name}/"
        npz[a + "kernel"] = dense(qkv_w[k * d:(k + 1) * d]).reshape(d, heads, d // heads)
        npz[a + "bias"] = qkv_b[k * d:(k + 1) * d].reshape(heads, d // heads)
    o = t + "MultiHeadDotProductAttention_1/out/"
    npz[o + "kernel"] = dense(sd[b + "attn.proj.weight"]).reshape(heads, d // heads, d)
    npz[o + "bias"] = sd[b + "attn.proj.bias"]
    for k, fc in enumerate(["fc1", "fc2"]):
        m = t + f"MlpBlock_3/Dense_{k}/"
        npz[m + "kernel"], npz[m + "bias"] = dense(sd[f"{b}mlp.{fc}.weight"]), sd[f"{b}mlp.{fc}.bias"]
np.savez("R11-ViT.npz", **{k: v.astype(np.float32) for k, v in npz.items()})

# timm's JAX loader reads it back into a fresh model: every tensor must equal the source's.
check = build()
with torch.no_grad():
    _load_weights(check, "R11-ViT.npz")
for k, v in check.state_dict().items():
    assert torch.equal(v, model.state_dict()[k]), k
print("timm's _load_weights reads the npz back exactly:", len(npz), "arrays")

x = load_file(source + "reference.safetensors")["input"].float()
with torch.no_grad():
    timm_logits = model(x)
    def jax_forward(self, x):  # models_resnet.py StdConv: standardise over [kH, kW, in] with eps on the std
        if self.same_pad:
            from timm.layers.padding import pad_same
            x = pad_same(x, self.kernel_size, self.stride, self.dilation)
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        std = w.var(dim=(1, 2, 3), unbiased=False, keepdim=True).sqrt()
        return F.conv2d(x, (w - mean) / (std + 1e-5), self.bias, self.stride, self.padding, self.dilation, self.groups)
    StdConv2dSame.forward = jax_forward
    jax_logits = model(x)
save_file({"input": x.contiguous(), "logits_timm": timm_logits.contiguous(), "logits_jax": jax_logits.contiguous()},
          "reference.safetensors")
print((timm_logits - jax_logits).abs().max())
