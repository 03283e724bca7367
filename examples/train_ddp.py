"""A tiny, deterministic DistributedDataParallel training run for gpuorch.

A 2-layer MLP learns y = 3*x0 - 2*x1 + 0.5 on synthetic data (seeds fixed).
Run alone (`python3 train_ddp.py --steps 50`) or under torchrun; under torchrun
it joins a process group — NCCL on the allocated GPU when CUDA is available,
gloo on the CPU otherwise — and each rank trains on its own shard. Every rank
prints the gpuorch progress contract each step:

    GPUORCH_STEP=<n>
    GPUORCH_METRIC loss=<v>

and, when GPUORCH_PROGRESS_FILE is set, rank 0 also writes its latest step and
loss there. At the end rank 0 prints

    GPUORCH_MODEL_SHA256=<hex>

a SHA-256 over the model's state dict (keys sorted; each key's bytes, then the
tensor's raw bytes), so runs can be compared bit for bit.

Checkpoints (gpuorch's checkpoint contract). When GPUORCH_CHECKPOINT_DIR is set,
global rank 0 — and only rank 0 — writes checkpoints to
`$GPUORCH_CHECKPOINT_DIR/<step>/` (the plain decimal step): `state.pt`, a
torch.save of {"step", "model" (the unwrapped module's state dict), "optimizer",
"world_size"} with every tensor on the CPU, written under a temporary name,
fsynced and renamed into place; then the empty file `COMPLETE`, last. A step
directory without `COMPLETE` is incomplete and never used; one that already has
it is left untouched. After each checkpoint rank 0 prints

    GPUORCH_CHECKPOINT step=<n> reason=<interval|final|signal|trigger>

A checkpoint is written at a step boundary (after optimizer.step):
  - interval: every `--checkpoint-every N` steps (default
    $GPUORCH_CHECKPOINT_INTERVAL_STEPS, else 0 = off), and whenever
    $GPUORCH_CHECKPOINT_INTERVAL_SECONDS (float) have passed since the last one;
  - final: at the last step (`--steps`), always;
  - signal: SIGUSR1 means "checkpoint now". Every rank catches it (its default
    action would kill the process) and only sets a flag; rank 0 writes a
    checkpoint of the current step at the next step boundary, other ranks
    ignore it;
  - trigger: when the file named by $GPUORCH_CHECKPOINT_TRIGGER exists at a step
    boundary, rank 0 writes a checkpoint of that step, then deletes the file.
  A signal or trigger at a step that already has a complete checkpoint is a
  no-op (the trigger file is still deleted).

Resuming: with GPUORCH_RESUME_FROM (a local directory holding `state.pt`) and
GPUORCH_RESUME_STEP (its step) set, every rank loads the checkpoint, checks its
step (exit 2 on a mismatch), and training continues at step + 1 up to
`--steps`; rank 0 prints `GPUORCH_RESUMED step=<n>`. The data of (rank, step)
comes from a generator seeded by both, so with the same world size an
interrupted and resumed run ends with bit-identical parameters to an
uninterrupted one (checked with gloo on CPUs; on GPUs that also takes
bit-reproducible NCCL reductions and CUDA kernels, which are not guaranteed).
The optimizer state, learning rate included, comes from the checkpoint.

Testing aids: `--step-sleep SECONDS` sleeps after each step; `--ledger PATH`
(default $GPUORCH_LEDGER) makes every rank append one line per step,
"<global rank> <step> <GPUORCH_ATTEMPT or 0> <pid> <unix time>", with a single
O_APPEND write, so concurrent writers never interleave within a line.
"""

import argparse
import hashlib
import os
import signal
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

CHECKPOINT_MARKER = "COMPLETE"
STATE_FILE = "state.pt"

# Set by the SIGUSR1 handler, consumed at the next step boundary.
_checkpoint_requested = False


def _on_sigusr1(signum, frame) -> None:
    # Only set a flag: the handler runs between two bytecodes of the main
    # thread, possibly in the middle of a step, so it must not touch torch.
    global _checkpoint_requested
    _checkpoint_requested = True


def _take_checkpoint_request() -> bool:
    """Whether SIGUSR1 arrived since the last call; clears the flag.

    Cleared before the checkpoint is written, so a signal arriving during the
    write asks for another one at the next step boundary rather than being lost.
    """
    global _checkpoint_requested
    requested, _checkpoint_requested = _checkpoint_requested, False
    return requested


def _env_number(name: str, kind, default):
    """Parse a numeric environment variable; unset or empty means `default`."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        sys.exit(f"train_ddp.py: {name}={raw!r} is not a valid {kind.__name__}")


def _fsync_dir(path: str) -> None:
    """Make a directory's entries (new or renamed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _to_cpu(obj):
    """A copy of a (nested) state dict with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def model_sha256(net: torch.nn.Module) -> str:
    """SHA-256 over a state dict's raw tensor bytes (torch.save output is not byte-stable)."""
    h = hashlib.sha256()
    state = net.state_dict()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def is_complete(root: str, step: int) -> bool:
    return os.path.isfile(os.path.join(root, str(step), CHECKPOINT_MARKER))


def write_checkpoint(root: str, step: int, net: torch.nn.Module, optimizer, world_size: int) -> None:
    """Write `<root>/<step>/state.pt`, then the COMPLETE marker (rank 0 only)."""
    step_dir = os.path.join(root, str(step))
    os.makedirs(step_dir, exist_ok=True)
    _fsync_dir(root)  # the step directory's own entry
    state = {
        "step": step,
        "model": _to_cpu(net.state_dict()),
        "optimizer": _to_cpu(optimizer.state_dict()),
        "world_size": world_size,
    }
    # A fixed temporary name: a leftover from a crashed attempt is simply
    # overwritten, and after the rename nothing but state.pt remains.
    tmp = os.path.join(step_dir, "." + STATE_FILE + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(step_dir, STATE_FILE))
    _fsync_dir(step_dir)  # state.pt is in place before the marker can be
    fd = os.open(os.path.join(step_dir, CHECKPOINT_MARKER), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(step_dir)


def load_resume_state():
    """The checkpoint named by GPUORCH_RESUME_FROM/GPUORCH_RESUME_STEP, or None; exits 2 when invalid."""
    resume_from = os.environ.get("GPUORCH_RESUME_FROM", "")
    resume_step_raw = os.environ.get("GPUORCH_RESUME_STEP", "").strip()
    if not resume_from and not resume_step_raw:
        return None
    if not resume_from or not resume_step_raw:
        print("train_ddp.py: GPUORCH_RESUME_FROM and GPUORCH_RESUME_STEP must be set together", file=sys.stderr, flush=True)
        sys.exit(2)
    try:
        resume_step = int(resume_step_raw)
    except ValueError:
        print(f"train_ddp.py: GPUORCH_RESUME_STEP={resume_step_raw!r} is not an integer", file=sys.stderr, flush=True)
        sys.exit(2)
    path = os.path.join(resume_from, STATE_FILE)
    if not os.path.isfile(path):
        print(f"train_ddp.py: GPUORCH_RESUME_FROM={resume_from}: no {STATE_FILE} there", file=sys.stderr, flush=True)
        sys.exit(2)
    state = torch.load(path, map_location="cpu")
    if state.get("step") != resume_step:
        print(
            f"train_ddp.py: checkpoint step mismatch: GPUORCH_RESUME_STEP={resume_step} "
            f"but {path} holds step {state.get('step')}",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(2)
    return state


def main() -> int:
    # First of all: from here on SIGUSR1 only sets a flag. SA_RESTART (via
    # siginterrupt False) restarts system calls it interrupts in C code, and
    # the signal is blocked while torch starts its helper threads (gloo/NCCL,
    # CUDA), which inherit the mask: it is then always the main thread — the
    # one that runs the Python handler — that receives it. A SIGUSR1 arriving
    # meanwhile stays pending and is delivered when it is unblocked below.
    signal.signal(signal.SIGUSR1, _on_sigusr1)
    signal.siginterrupt(signal.SIGUSR1, False)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=_env_number("GPUORCH_CHECKPOINT_INTERVAL_STEPS", int, 0),
        metavar="N",
        help="checkpoint every N steps when GPUORCH_CHECKPOINT_DIR is set (default $GPUORCH_CHECKPOINT_INTERVAL_STEPS, else 0 = off)",
    )
    parser.add_argument("--step-sleep", type=float, default=0.0, metavar="SECONDS", help="sleep after each step")
    parser.add_argument(
        "--ledger",
        default=os.environ.get("GPUORCH_LEDGER") or None,
        metavar="PATH",
        help="append '<rank> <step> <attempt> <pid> <time>' per step (default $GPUORCH_LEDGER)",
    )
    args = parser.parse_args()

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    checkpoint_dir = os.environ.get("GPUORCH_CHECKPOINT_DIR") or None
    checkpoint_seconds = _env_number("GPUORCH_CHECKPOINT_INTERVAL_SECONDS", float, 0.0)
    trigger_file = os.environ.get("GPUORCH_CHECKPOINT_TRIGGER") or None
    attempt = os.environ.get("GPUORCH_ATTEMPT") or "0"

    # Under torchrun (WORLD_SIZE set) always join a process group, even of one:
    # NCCL on GPUs (CUDA_VISIBLE_DEVICES is the allocation), gloo on CPUs.
    distributed = "WORLD_SIZE" in os.environ
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")

    # Validate the resume checkpoint before joining the process group, so a
    # bad one makes every rank exit 2 at once instead of hanging its peers.
    resume = load_resume_state()

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
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr)
    start_step = 0
    if resume is not None:
        # Load before wrapping: DDP broadcasts rank 0's parameters when it is
        # constructed, and every rank holds the same checkpoint anyway.
        net.load_state_dict(resume["model"])  # copies onto the parameters' device
        # Moves any state to the parameters' device; the saved lr replaces --lr.
        optimizer.load_state_dict(resume["optimizer"])
        start_step = resume["step"]
        if rank == 0:
            saved_world = resume.get("world_size")
            if saved_world != world_size:
                print(f"rank 0: note: checkpoint was written with world size {saved_world}, now {world_size}", flush=True)
            print(f"GPUORCH_RESUMED step={start_step}", flush=True)
        del resume
    model = DistributedDataParallel(net, device_ids=[local_rank] if use_cuda else None) if distributed else net
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})

    ledger_fd = os.open(args.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if args.ledger else None
    progress_file = os.environ.get("GPUORCH_PROGRESS_FILE")
    last_checkpoint = time.monotonic()
    loss_value = float("nan")

    def checkpoint(step: int, reason: str) -> None:
        nonlocal last_checkpoint
        if is_complete(checkpoint_dir, step):
            # Already there (written earlier in this run or by an earlier
            # attempt, maybe being uploaded): a complete checkpoint is never rewritten.
            if reason != "signal" and reason != "trigger":
                print(f"rank 0: checkpoint step={step} already complete; kept", flush=True)
            return
        write_checkpoint(checkpoint_dir, step, net, optimizer, world_size)
        last_checkpoint = time.monotonic()
        print(f"GPUORCH_CHECKPOINT step={step} reason={reason}", flush=True)

    for step in range(start_step + 1, args.steps + 1):
        # The batch of (rank, step) is the same however the run got here
        # (uninterrupted or resumed): a fresh generator per step.
        data = torch.Generator().manual_seed(1000 + 100_003 * rank + step)
        x = torch.randn(args.batch_size, 2, generator=data).to(device)
        y = (3 * x[:, 0] - 2 * x[:, 1] + 0.5).unsqueeze(1)
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_value = loss.item()

        if ledger_fd is not None:
            # One write() per line on an O_APPEND descriptor: lines from any
            # number of processes never interleave.
            os.write(ledger_fd, f"{rank} {step} {attempt} {os.getpid()} {time.time():.6f}\n".encode())
        print(f"GPUORCH_STEP={step}", flush=True)
        print(f"GPUORCH_METRIC loss={loss_value:.6f}", flush=True)
        if progress_file and rank == 0:
            tmp = progress_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"GPUORCH_STEP={step}\nGPUORCH_METRIC loss={loss_value:.6f}\n")
            os.replace(tmp, progress_file)

        # Step boundary: the optimizer has stepped, so the state is that of `step`.
        signalled = _take_checkpoint_request()
        if rank == 0:
            if checkpoint_dir:
                # Regular checkpoints first; an emergency one at the same step is then a no-op.
                if (args.checkpoint_every > 0 and step % args.checkpoint_every == 0) or (
                    checkpoint_seconds > 0 and time.monotonic() - last_checkpoint >= checkpoint_seconds
                ):
                    checkpoint(step, "interval")
                elif step == args.steps:
                    checkpoint(step, "final")
                if signalled:
                    checkpoint(step, "signal")
            elif signalled:
                print("rank 0: SIGUSR1 checkpoint request ignored: GPUORCH_CHECKPOINT_DIR is not set", file=sys.stderr, flush=True)
            if trigger_file and os.path.exists(trigger_file):
                if checkpoint_dir:
                    checkpoint(step, "trigger")
                else:
                    print("rank 0: checkpoint trigger ignored: GPUORCH_CHECKPOINT_DIR is not set", file=sys.stderr, flush=True)
                try:
                    os.remove(trigger_file)
                except FileNotFoundError:
                    pass

        if args.step_sleep > 0:
            time.sleep(args.step_sleep)

    if ledger_fd is not None:
        os.close(ledger_fd)
    print(f"rank {rank}/{world_size} done: {args.steps} steps, final loss {loss_value:.6f}", flush=True)
    if rank == 0:
        print(f"GPUORCH_MODEL_SHA256={model_sha256(net)}", flush=True)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
