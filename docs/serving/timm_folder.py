"""Runs ../shared/bench/serve/server.py, unchanged, on a timm-layout model folder (config.json with architecture,
model_args and pretrained_cfg, plus model.safetensors), such as `vit create` or `vit convert` write and the built-in
model is: the Python server a timm user would write, on the same weights and preprocessing as `vit serve`.

    python timm_folder.py FOLDER --backend torch|openvino --port 8101
"""
import json, os, runpy, sys
import timm

folder = sys.argv.pop(1)
config = json.load(open(os.path.join(folder, "config.json")))
create = timm.create_model


def create_from_folder(_arch, pretrained=False, **kwargs):
    kwargs.update(config.get("model_args", {}))  # the folder's architecture, whatever --arch says
    kwargs["pretrained_cfg_overlay"] = config.get("pretrained_cfg", {})  # its input size, crop, mean and std
    return create(config["architecture"], pretrained=False, **kwargs)


timm.create_model = create_from_folder
server = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/bench/serve/server.py")
sys.argv = [server] + sys.argv[1:] + ["--weights", os.path.join(folder, "model.safetensors"),
                                      "--num-classes", str(config.get("num_classes", 1000))]
runpy.run_path(server, run_name="__main__")
