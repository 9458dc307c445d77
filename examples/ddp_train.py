"""Data-parallel training on CPUs (torch.distributed, gloo) that checkpoints and resumes.

Run by wanka as a gang: every task gets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (so
``init_process_group("env://")`` just works), its cards in the vendor's visibility variable, and
WANKA_CHECKPOINT_DIR, which is the same for every run of the job. Rank 0 saves a checkpoint every
``--every`` steps; a restarted run (after a failure or a preemption) resumes from the latest one, so
the step counter continues where it was instead of starting from zero.

    python examples/ddp_train.py --steps 200 --every 20
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import torch
import torch.distributed as dist
from torch import nn


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=20, help="checkpoint every N steps")
    parser.add_argument("--step-time", type=float, default=0.0, help="extra seconds per step")
    args = parser.parse_args()

    dist.init_process_group("gloo")  # env://: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    rank, world = dist.get_rank(), dist.get_world_size()
    ckpt_dir = os.environ.get("WANKA_CHECKPOINT_DIR", ".")
    path = os.path.join(ckpt_dir, "ddp.pt")
    visible = {k: v for k, v in os.environ.items() if k.endswith("VISIBLE_DEVICES")}
    print(f"rank {rank}/{world} run {os.environ.get('WANKA_RUN', '?')} devices {visible}", flush=True)

    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1)))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
    step = 0
    if os.path.exists(path):  # resume: every rank loads the same state
        state = torch.load(path, weights_only=True)
        model.module.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step = state["step"]
    start = step
    print(f"rank {rank} starts at step {step}", flush=True)

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))  # preempted: save and leave

    def save() -> None:
        if rank == 0:
            tmp = path + ".tmp"
            torch.save(
                {"model": model.module.state_dict(), "optimiser": optimiser.state_dict(), "step": step}, tmp
            )
            os.replace(tmp, path)  # a crash mid-write never leaves a torn checkpoint

    generator = torch.Generator().manual_seed(1000 + rank)
    target = torch.randn(16, 1, generator=torch.Generator().manual_seed(7))
    while step < args.steps:
        x = torch.randn(64, 16, generator=generator)
        loss = nn.functional.mse_loss(model(x), x @ target)
        optimiser.zero_grad()
        loss.backward()  # gradients are all-reduced across the gang here
        optimiser.step()
        step += 1
        if step % args.every == 0 or step == args.steps:
            save()
            print(f"rank {rank} step {step} loss {loss.item():.4f} (checkpoint)", flush=True)
        flag = torch.tensor([1 if stop["now"] else 0])
        dist.all_reduce(flag)  # leave together, or a peer would hang in the next all-reduce
        if flag.item():
            save()
            print(f"rank {rank} stopped at step {step}, checkpoint saved", flush=True)
            dist.barrier()
            dist.destroy_process_group()
            return 143
        if args.step_time:
            time.sleep(args.step_time)
    final = f"{loss.item():.4f}" if step > start else "n/a (nothing left to do)"
    print(f"rank {rank} done: {step} steps, final loss {final}", flush=True)
    dist.barrier()  # no rank tears the group down while a peer still talks to it
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
