"""Training input pipeline throughput: samples per second of decode + augment + collate.

Renders a small toy dataset (320x240 JPEG frames and fastOF flow, the UCF101-24 layout),
then iterates a DataLoader over the training windows for rgb alone and rgb + 5-frame
flow fusion, with 0 and 2 workers, and prints a table. Matching to priors is not part
of the data pipeline: it runs in the loss, on the device. With ``--workers 0`` the
time is also split into decoding and augmentation.

python -m bench.bench_data [--samples 240] [--batch_size 8] [--workers 0,2] [--root DIR]
"""
import argparse
import logging
import tempfile
import time

import torch
from torch.utils.data import DataLoader

from data.dataset import ActionDetection, DataConfig, collate
from data.toy import ToyConfig, make_toy_dataset

SETUPS = {
    "rgb": dict(two_stream=False),
    "rgb + fastOF x5 (fusion)": dict(two_stream=True, input_type_extra="fastOF", input_frames_extra=5),
}


def throughput(dataset, workers, batch_size, samples):
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))
    batches = iter(loader)
    next(batches)  # start-up (worker processes) is not counted
    done, start = 0, time.perf_counter()
    while done < samples:
        try:
            done += len(next(batches)["videos"])
        except StopIteration:
            batches = iter(loader)
    return done / (time.perf_counter() - start)


def split_decode_augment(dataset, samples):
    """Seconds per sample spent decoding and in the rest (augment + stacking), one process."""
    decode = total = 0.0
    for i in range(samples):
        window = dataset.windows[i % len(dataset)]
        t0 = time.perf_counter()
        dataset.load_window(window)
        t1 = time.perf_counter()
        dataset[i % len(dataset)]
        t2 = time.perf_counter()
        decode += t1 - t0
        total += t2 - t1
    return decode / samples, (total - decode) / samples


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--workers", default="0,2")
    parser.add_argument("--root", default=None, help="existing dataset in the UCF24 layout with fastOF (default: render a toy set)")
    return parser


def main():
    args = get_args_parser().parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            root = tmp
            make_toy_dataset(root, ToyConfig(num_videos=8, seed=0, min_frames=40, max_frames=48), progress=False)
        print("| pipeline | workers | samples/s | decode ms/sample | augment ms/sample |")
        print("| --- | --- | --- | --- | --- |")
        for name, setup in SETUPS.items():
            cfg = DataConfig(dataset="toy", data_root=str(root), **setup)
            dataset = ActionDetection(cfg, "train", seed=0)
            for workers in (int(w) for w in args.workers.split(",")):
                rate = throughput(dataset, workers, args.batch_size, args.samples)
                split = ("", "")
                if workers == 0:
                    decode, augment = split_decode_augment(dataset, min(args.samples, 80))
                    split = (f"{1000 * decode:.1f}", f"{1000 * augment:.1f}")
                print(f"| {name} | {workers} | {rate:.1f} | {split[0]} | {split[1]} |", flush=True)


if __name__ == "__main__":
    main()
