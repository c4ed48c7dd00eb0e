# Writes checkpoint.pth: the timm ResNet fixture's weights (../timm-resnet-basic1111-w16-i32/model.safetensors) as a
# training script saves them with torch.save: wrapped in {'model': ...} under DistributedDataParallel's 'module.'
# prefix, beside an epoch number and optimiser state. Run with torch and safetensors installed:
#   python3 make.py
import os
import torch
from safetensors.torch import load_file

here = os.path.dirname(os.path.abspath(__file__))
weights = load_file(os.path.join(here, "..", "timm-resnet-basic1111-w16-i32", "model.safetensors"))
torch.save(
    {
        "model": {"module." + name: tensor for name, tensor in weights.items()},
        "epoch": 7,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9}]},
    },
    os.path.join(here, "checkpoint.pth"),
)
# torch.load reads it back to the same tensors.
back = torch.load(os.path.join(here, "checkpoint.pth"), weights_only=True)["model"]
assert all(torch.equal(back["module." + n], t) for n, t in weights.items())
print(len(weights), "tensors")
