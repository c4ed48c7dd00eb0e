#!/usr/bin/env python3
"""A data set that does not fit in memory as decoded pixels, for `vit train`'s streaming (issue 49): CIFAR-10's 50,000
training images, each upsampled to 256 px (bicubic) and cut to 224 px at a random place, in COPIES copies with
different crops (10 copies: 500,000 images, 75 GB as 224 px RGB bytes), written as 224 px JPEGs (quality 90) into
WebDataset shards by Python's webdataset.ShardWriter (KEY.jpg + KEY.cls), with open_clip's sizes.json and an
_info.json listing the class names. The test part (10,000 images, centre crop) goes to test-*.tar.

    python3 scripts/make-cifar224-shards.py ../shared/data/cifar10-jpg.tar.gz runs/cifar224 [--copies 10] [--jobs 2]

Needs Pillow and webdataset (pip install pillow webdataset). Reproducible: the crops come from (copy, index).
"""
import argparse, io, json, os, random, tarfile
from multiprocessing import Pool

from PIL import Image
import webdataset as wds

PER_SHARD = 5000


def read_part(archive, part):
    """(class name, JPEG bytes) of a part, sorted by class then file name, and the sorted class names."""
    items = []
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.strip("./").split("/")
            if member.isfile() and len(parts) == 3 and parts[0] == part and parts[2].lower().endswith((".jpg", ".png")):
                items.append((parts[1], parts[2], tar.extractfile(member).read()))
    items.sort(key=lambda item: (item[0], item[1]))
    classes = sorted({item[0] for item in items})
    return [(classes.index(c), data) for c, _, data in items], classes


def encode(data, seed, centre):
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((256, 256), Image.BICUBIC)
    rng = random.Random(seed)
    x, y = (16, 16) if centre else (rng.randrange(33), rng.randrange(33))
    out = io.BytesIO()
    image.crop((x, y, x + 224, y + 224)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def write_shard(job):
    output, prefix, number, items, offset, copy, centre = job
    name = f"{prefix}-{number:06d}.tar"
    with wds.TarWriter(os.path.join(output, name + ".partial")) as sink:
        for k, (label, data) in enumerate(items):
            index = offset + k
            sink.write({"__key__": f"{copy:02d}{index:06d}", "jpg": encode(data, copy * 1_000_003 + index, centre), "cls": str(label)})
    os.replace(os.path.join(output, name + ".partial"), os.path.join(output, name))
    return name, len(items)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("archive")
    parser.add_argument("output")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)
    train, classes = read_part(args.archive, "train")
    test, _ = read_part(args.archive, "test")
    jobs, number = [], 0
    for copy in range(args.copies):
        order = list(range(len(train)))
        random.Random(copy).shuffle(order)  # each shard mixes the classes
        shuffled = [train[i] for i in order]
        for start in range(0, len(shuffled), PER_SHARD):
            jobs.append((args.output, "train", number, shuffled[start:start + PER_SHARD], start, copy, False))
            number += 1
    for number, start in enumerate(range(0, len(test), PER_SHARD)):
        jobs.append((args.output, "test", number, test[start:start + PER_SHARD], start, 0, True))
    sizes = {}
    with Pool(args.jobs) as pool:
        for name, count in pool.imap_unordered(write_shard, jobs):
            sizes[name] = count
            print(f"{name}: {count}", flush=True)
    json.dump(dict(sorted(sizes.items())), open(os.path.join(args.output, "sizes.json"), "w"))
    total = sum(v for k, v in sizes.items() if k.startswith("train"))
    json.dump({"num_samples": total, "classes": classes, "shards": sorted(sizes)}, open(os.path.join(args.output, "_info.json"), "w"))
    print(f"{total} training images in {sum(k.startswith('train') for k in sizes)} shards, {len(test)} test images")


if __name__ == "__main__":
    main()
