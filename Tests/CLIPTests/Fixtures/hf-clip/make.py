"""Writes this folder: a Hugging Face CLIPModel (transformers, random weights, QuickGELU as OpenAI's) saved with
save_pretrained, its tokenizer files and image processor config, and reference.safetensors with the outputs the
Swift tests compare against. Run from this folder: python3 make.py (needs torch, transformers, safetensors)."""
import json
import shutil
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPConfig, CLIPModel

torch.manual_seed(0)
config = CLIPConfig(
    text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=128, num_attention_heads=2, num_hidden_layers=2,
                     max_position_embeddings=77, hidden_act="quick_gelu"),
    vision_config=dict(hidden_size=64, intermediate_size=256, num_attention_heads=4, num_hidden_layers=2, image_size=32,
                       patch_size=8, hidden_act="quick_gelu"),
    projection_dim=24)
model = CLIPModel(config).eval()
with torch.no_grad():  # perturb every tensor so that no parameter is left at a neutral initial value
    for p in model.parameters():
        p.add_(torch.randn_like(p) * 0.05)
model.save_pretrained(".", safe_serialization=True)
# The hub folders' tokenizer files (the same BPE as ../vocab.json, ../merges.txt) and image processor config.
shutil.copy("../vocab.json", "vocab.json")
shutil.copy("../merges.txt", "merges.txt")
with open("preprocessor_config.json", "w") as f:
    json.dump({"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": 32},
               "do_center_crop": True, "crop_size": {"height": 32, "width": 32}, "resample": 3,
               "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]},
              f, indent=2)

reference = load_file("../openclip-reference.safetensors")
tokens = load_file("../text_tokens.safetensors")["text_tokens"][:4].long()  # open_clip's ids: zero padding
pixels = reference["image_input"]
with torch.no_grad():
    image = model.get_image_features(pixel_values=pixels)
    text = model.get_text_features(input_ids=tokens)
    image = getattr(image, "pooler_output", image)
    text = getattr(text, "pooler_output", text)
    logits = model(input_ids=tokens, pixel_values=pixels).logits_per_image
save_file({"text_tokens": tokens.int().contiguous(), "image_input": pixels.contiguous(), "image_embeds": image.contiguous(),
           "text_embeds": text.contiguous(), "logits_per_image": logits.contiguous()}, "reference.safetensors")
print(image.shape, text.shape, logits)
