"""safetensors checkpoints of the models the project trains: tensors plus
JSON strings in the file's metadata (``model`` = the class, ``config``, any
extra fields such as a vocabulary). No pickle anywhere."""
from __future__ import annotations

import json
from pathlib import Path


def save_checkpoint(module, path: str | Path, kind: str, config: dict, extra: dict | None = None,
                    **fields) -> None:
    from safetensors.torch import save_file

    meta = {"model": kind, "config": json.dumps(config), **{k: json.dumps(v) for k, v in fields.items()}}
    if extra:
        meta["extra"] = json.dumps(extra)
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(path), metadata=meta)


def load_checkpoint(path: str | Path, kind: str) -> tuple[dict, dict]:
    """(metadata with JSON values decoded, state dict); ValueError if the file
    holds another model."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("model") != kind:
        raise ValueError(f"{path} is not a {kind} checkpoint (it says {meta.get('model')!r})")
    return {k: (v if k == "model" else json.loads(v)) for k, v in meta.items()}, load_file(str(path))
