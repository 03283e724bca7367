#!/bin/bash
# Run on the GPU machine from the repo root with .devcarry carried (scripts/device-bundle.sh builds it).
# Real-hardware check of gpuorch: discovery with the real nvidia-smi, then controller + agent
# on the GPU node running a 1-GPU PyTorch DDP job over NCCL, a trivial job, an infeasible job and a cancel.
set -u
exec > >(tee $OUT/gpu-check.log) 2>&1
mkdir -p /tmp/n && xz -dc .devcarry/node.xz > /tmp/n/node && chmod +x /tmp/n/node && export PATH=/tmp/n:$PATH
echo "== versions"; node --version; uname -r; nvidia-smi -L | tee $OUT/nvidia-smi-L.txt
nvidia-smi -q -x > $OUT/nvidia-smi-q.xml; nvidia-smi --query-gpu=index,name,memory.total,driver_version,mig.mode.current --format=csv
which python3 torchrun; python3 -c "import torch;print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.device_count())"
D=$PWD/.devcarry; C="node $D/bin/cli.mjs"
echo "== inventory (real nvidia-smi)"; node $D/bin/agent.mjs inventory --json > $OUT/inventory.json; node $D/bin/agent.mjs inventory
export HOME=/tmp/h; mkdir -p $HOME
node $D/bin/controller.mjs serve --embedded --data-dir $HOME/data --heartbeat-interval-seconds 1 --heartbeat-flush-ms 500 --log-level info > $HOME/controller.log 2>&1 &
for i in $(seq 1 120); do grep -q agent_token $HOME/.gpuorch/config.yaml 2>/dev/null && break; sleep 0.5; done
T=$(sed -n 's/^agent_token: //p' $HOME/.gpuorch/config.yaml)
node $D/bin/agent.mjs run --controller 127.0.0.1:7070 --token $T --work-dir $HOME/agent --private-ip 127.0.0.1 \
  --provider onprem --region lab --network lab --python python3 --torchrun $(which torchrun) --code-dir $PWD --log-level info > $HOME/agent.log 2>&1 &
for i in $(seq 1 60); do $C nodes 2>/dev/null | grep -q ready && break; sleep 0.5; done
echo "== nodes"; $C nodes; $C nodes --json > $OUT/nodes.json
cat > /tmp/ddp1.yaml <<Y
version: 1
job: {name: h100-ddp, type: training, framework: pytorch_ddp}
entrypoint: {uri: examples/train_ddp.py, args: [--steps, "300"]}
resources: {gpus: 1, gpu_type: [H100], gpu_memory: 80GB}
Y
cat > /tmp/hello.yaml <<Y
version: 1
job: {name: hello, type: eval, framework: command}
entrypoint: {command: "nvidia-smi -L; echo CUDA_VISIBLE_DEVICES=\$CUDA_VISIBLE_DEVICES"}
resources: {gpus: 1}
Y
cat > /tmp/big.yaml <<Y
version: 1
job: {name: big, type: training, framework: pytorch_ddp}
entrypoint: {command: [python, train.py]}
resources: {gpus: 8, max_gpus_per_node: 8}
Y
cat > /tmp/long.yaml <<Y
version: 1
job: {name: long, type: training, framework: pytorch_ddp}
entrypoint: {uri: examples/train_ddp.py, args: [--steps, "100000000"]}
resources: {gpus: 1}
Y
id() { python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])'; }
echo "== ddp on the H100 (NCCL)"; J=$($C submit /tmp/ddp1.yaml --json | id); time $C watch $J; $C get $J; $C logs $J | head -3; $C logs $J --tail 3
echo "== hello"; H=$($C submit /tmp/hello.yaml --json | id); $C watch $H; $C logs $H
echo "== infeasible"; B=$($C submit /tmp/big.yaml --json | id); sleep 2; $C get $B | head -8
echo "== cancel"; L=$($C submit /tmp/long.yaml --json | id); for i in $(seq 1 60); do $C get $L --json | grep -q '"status": *"running"' && break; sleep 0.5; done; sleep 8
$C get $L | tail -3; nvidia-smi --query-compute-apps=pid,used_memory --format=csv; $C nodes
$C cancel $L; sleep 4; $C get $L | head -4; echo "compute apps after cancel:"; nvidia-smi --query-compute-apps=pid,used_memory --format=csv
ps -eo pid,pgid,cmd | grep -c "[t]rain_ddp" ; $C events $L
kill %2; sleep 3; kill %1; wait
cp $HOME/controller.log $HOME/agent.log $OUT/ 2>/dev/null; echo done
