#!/usr/bin/env python3
"""Move weights between batchnorm (Node.js) and PyTorch, through JSON with PyTorch's names.

The JSON is a flat object: each state_dict key (e.g. "1.running_var") maps to the tensor as
a flat row-major list of numbers, and num_batches_tracked to an integer. BatchNorm's
loadStateDict reads the BatchNorm entries as they are (weight, bias, running_mean,
running_var, num_batches_tracked); examples/train-mlp.ts writes and reads the whole model.

    # Node.js -> PyTorch: train in Node, load the result into the same torch model
    node dist/examples/train-mlp.js state.json
    python3 examples/torch_checkpoint.py to-torch state.json mlp.pt

    # PyTorch -> Node.js: any state_dict checkpoint to JSON, then load it in Node
    python3 examples/torch_checkpoint.py from-torch mlp.pt state.json
    node dist/examples/train-mlp.js --from state.json

to-torch needs the model the JSON belongs to (it gives every tensor its shape): here
`mlp()`, the model of train-mlp.ts; put your own model there. Both commands print the
model's predictions on the same probe inputs as train-mlp.ts, so the two sides can be
compared number for number.
"""

import json
import sys

import torch
import torch.nn as nn

HIDDEN = 16
PROBES = [[0, 0], [1, 0.5], [-1, 0.5], [0.5, -0.3], [2, 1]]


def mlp():
    """The model of examples/train-mlp.ts (its fused BN + ReLU is BatchNorm1d then ReLU)."""
    return nn.Sequential(nn.Linear(2, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))


def state_from_json(path, model):
    """JSON lists -> tensors shaped and typed like the model's own state."""
    with open(path) as f:
        flat = json.load(f)
    template = model.state_dict()
    unknown = sorted(set(flat) - set(template))
    if unknown:
        sys.exit(f'{path}: keys the model does not have: {unknown}')
    state = {}
    for key, like in template.items():
        if key not in flat:
            sys.exit(f'{path}: missing {key}')
        state[key] = torch.tensor(flat[key], dtype=like.dtype).reshape(like.shape)
    return state


def state_to_json(state, path):
    flat = {}
    for key, t in state.items():
        t = t.detach().cpu()
        flat[key] = int(t) if key.endswith('num_batches_tracked') else t.reshape(-1).tolist()
    with open(path, 'w') as f:
        json.dump(flat, f)


def print_probes(model):
    model.eval()
    with torch.no_grad():
        p = torch.sigmoid(model(torch.tensor(PROBES, dtype=torch.float32))).reshape(-1)
    print('probe predictions: ' + ' '.join(f'{v:.6f}' for v in p.tolist()))


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ('to-torch', 'from-torch'):
        sys.exit(__doc__)
    command, source, target = sys.argv[1:]
    model = mlp()
    if command == 'to-torch':
        model.load_state_dict(state_from_json(source, model))
        torch.save(model.state_dict(), target)
        print(f'wrote {target}')
    else:
        state = torch.load(source)
        state_to_json(state, target)
        print(f'wrote {target} ({len(state)} entries)')
        model.load_state_dict(state)
    print_probes(model)


if __name__ == '__main__':
    main()
