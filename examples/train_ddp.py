"""A tiny, deterministic DistributedDataParallel training run for gpuorch.

A 2-layer MLP learns y = 3*x0 - 2*x1 + 0.5 on synthetic data (seed fixed).
Run alone (`python3 train_ddp.py --steps 50`) or under torchrun; under torchrun
it joins a process group — NCCL on the allocated GPU when CUDA is available,
gloo on the CPU otherwise — and each rank trains on its own shard. Every rank
prints the gpuorch progress contract each step:

    GPUORCH_STEP=<n>
    GPUORCH_METRIC loss=<v>

and, when GPUORCH_PROGRESS_FILE is set, rank 0 also writes its latest step and
loss there.
"""

import argparse
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    # Under torchrun (WORLD_SIZE set) always join a process group, even of one:
    # NCCL on GPUs (CUDA_VISIBLE_DEVICES is the allocation), gloo on CPUs.
    distributed = "WORLD_SIZE" in os.environ
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if distributed:
        # MASTER_ADDR/MASTER_PORT come from torchrun (or the gpuorch launcher).
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    if rank == 0:
        backend = dist.get_backend() if distributed else "none"
        name = torch.cuda.get_device_name(device) if use_cuda else "cpu"
        print(f"rank 0: world size {world_size}, backend {backend}, device {name}", flush=True)

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).to(device)
    if distributed:
        model = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)

    # Each rank draws its own shard from a generator seeded by its rank.
    data = torch.Generator().manual_seed(1000 + rank)
    progress_file = os.environ.get("GPUORCH_PROGRESS_FILE")
    loss_value = float("nan")
    for step in range(1, args.steps + 1):
        x = torch.randn(args.batch_size, 2, generator=data).to(device)
        y = (3 * x[:, 0] - 2 * x[:, 1] + 0.5).unsqueeze(1)
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        print(f"GPUORCH_STEP={step}", flush=True)
        print(f"GPUORCH_METRIC loss={loss_value:.6f}", flush=True)
        if progress_file and rank == 0:
            tmp = progress_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"GPUORCH_STEP={step}\nGPUORCH_METRIC loss={loss_value:.6f}\n")
            os.replace(tmp, progress_file)

    print(f"rank {rank}/{world_size} done: {args.steps} steps, final loss {loss_value:.6f}", flush=True)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
